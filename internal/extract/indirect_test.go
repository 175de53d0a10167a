package extract

import (
	"errors"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// References to glibc's stderr and opterr, which the program does not
// copy, go through slots of .hotpatch.got: the load and the
// read-modify-write by thunks appended to the text, the lea in place.
// A replaced function with no room for the jump is warned about.
func TestExtractSendsFarReferencesThroughSlotsAndWarnsAboutRoom(t *testing.T) {
	testutil.RequireGCC(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"O2-pie", []string{"-O2", "-g", "-fPIE", "-pie"}},
		{"O0-nopie", []string{"-O0", "-g", "-fno-pie", "-no-pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			orig, patched := linkPair(t, dir, "testdata/short/prog.c", "testdata/short/patch.s", tc.flags, nil)
			var warns []string
			p, err := File(patched, orig, Options{Target: "prog", ID: "short", Level: 1, Warn: func(w string) { warns = append(warns, w) }})
			if err != nil {
				t.Fatal(err)
			}
			checkWellFormed(t, p)
			if len(warns) != 1 || !strings.Contains(warns[0], "walled") || !strings.Contains(warns[0], "refuse") {
				t.Errorf("warnings %q, want one naming walled", warns)
			}
			got := p.Sections[sectionIndex(t, p, gotSection)]
			if got.Kind != patchfile.SectionData || got.Size != 16 {
				t.Fatalf("%s: %+v, want two 8-byte slots", gotSection, got)
			}
			slots := map[string]bool{}
			for _, r := range p.Relocs {
				if p.Sections[r.Section].Name == gotSection {
					s := p.Symbols[r.Symbol]
					if s.Kind != patchfile.SymExternal {
						t.Errorf("slot for %s is %v, want external", s.Name, s.Kind)
					}
					slots[s.Name] = true
				}
			}
			if !slots["stderr"] || !slots["opterr"] || len(slots) != 2 {
				t.Errorf("slots for %v, want stderr and opterr", slots)
			}
			text := p.Sections[sectionIndex(t, p, ".hotpatch.text")]
			_, four := findSym(t, p, "four.hotpatch")
			if text.Size <= four.Value+four.Size+16 {
				t.Errorf("text is %d bytes: no thunks after the functions", text.Size)
			}
			// No relocation reaches another object directly any more.
			for _, r := range p.Relocs {
				if s := p.Symbols[r.Symbol]; s.Kind == patchfile.SymExternal && p.Sections[r.Section].Name != gotSection {
					t.Errorf("%s+%#x still refers to %s directly", p.Sections[r.Section].Name, r.Offset, s.Name)
				}
			}
		})
	}
}

// An instruction with no rewrite through a slot is refused at build
// time, naming the symbol, the function and what to change.
func TestExtractRefusesFarReferenceItCannotRewrite(t *testing.T) {
	testutil.RequireGCC(t)
	dir := t.TempDir()
	orig, patched := linkPair(t, dir, "testdata/short/prog.c", "testdata/short/refused.s", []string{"-O2", "-g"}, nil)
	_, err := File(patched, orig, Options{Target: "prog", ID: "refused", Level: 1})
	var re *RelocError
	if !errors.As(err, &re) || re.Symbol != "opterr" || !strings.Contains(err.Error(), "four.hotpatch+0x2") || !strings.Contains(err.Error(), "local variable") {
		t.Fatalf("a high-byte load of another object's variable: %v", err)
	}
}
