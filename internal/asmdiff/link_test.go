package asmdiff

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestLink links the augmented objects of a representative set of cases
// as the build does (gcc -Wl,-q, into PIE and non-PIE executables and
// shared libraries) and checks the contract's promise: ld accepts them,
// creates nothing dynamic for the patch sections, keeps their
// relocations, and every symbol of the original link keeps its address.
func TestLink(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range loadCases(t) {
		if !c.expect.Link {
			continue
		}
		for _, fs := range c.flagSets() {
			c, fs := c, fs
			t.Run(c.name+"/"+fs.Name, func(t *testing.T) {
				t.Parallel()
				r := runCase(t, c, fs)
				if r.err != nil {
					t.Fatalf("Generate: %v", r.err)
				}
				if bytes.Equal(r.out, r.orig) {
					t.Skip("skipped: nothing changed at these flags, so there is nothing new to link")
				}
				cxx := asmtest.IsCXX(c.orig)
				support := asmtest.Assemble(t, asmtest.CompileFile(t, "testdata/link_support.c", fs.Flags))
				outObj := asmtest.Assemble(t, r.out)
				origBin := link(t, cxx, fs, asmtest.Assemble(t, r.orig), support)
				outBin := link(t, cxx, fs, outObj, support)
				compareLinks(t, origBin, outBin)
				checkRelocsKept(t, outObj, outBin)
			})
		}
	}
}

func link(t *testing.T, cxx bool, fs asmtest.FlagSet, objs ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "a.out")
	driver := "gcc"
	if cxx {
		driver = "g++"
	}
	args := append(append(append([]string{}, fs.Flags...), fs.LinkFlags()...), "-Wl,-q", "-o", out)
	args = append(args, objs...)
	if msg, err := exec.Command(driver, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", driver, strings.Join(args, " "), err, msg)
	}
	return out
}

// linkIgnored are symbols the linker places after the last section, which
// the patch sections legitimately move.
var linkIgnored = map[string]bool{"_end": true, "_edata": true, "__bss_start": true, "__TMC_END__": true}

func compareLinks(t *testing.T, origPath, outPath string) {
	t.Helper()
	eo := openELF(t, origPath)
	defer eo.Close()
	ep := openELF(t, outPath)
	defer ep.Close()

	symbolSet := func(f *elf.File) map[string]int {
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]int{}
		for _, s := range syms {
			typ := elf.ST_TYPE(s.Info)
			if typ == elf.STT_FILE || typ == elf.STT_SECTION || s.Name == "" || linkIgnored[s.Name] ||
				strings.HasPrefix(s.Name, ".L") {
				continue
			}
			sec := "abs"
			if s.Section == elf.SHN_UNDEF {
				sec = "undef"
			} else if int(s.Section) < len(f.Sections) {
				sec = f.Sections[s.Section].Name
			}
			set[fmt.Sprintf("%s %#x %s", s.Name, s.Value, sec)]++
		}
		return set
	}
	so, sp := symbolSet(eo), symbolSet(ep)
	var moved []string
	for k, n := range so {
		if sp[k] < n {
			moved = append(moved, k)
		}
	}
	sort.Strings(moved)
	if len(moved) > 0 {
		t.Errorf("%d symbols of the original link are not at the same place in the patched link, e.g. %q",
			len(moved), moved[:min(len(moved), 5)])
	}

	// Allocated sections keep their addresses and sizes, and the dynamic
	// sections their contents.
	for _, s := range eo.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		ps := ep.Section(s.Name)
		if ps == nil {
			t.Errorf("section %s is missing from the patched link", s.Name)
			continue
		}
		if ps.Addr != s.Addr || ps.Size != s.Size {
			t.Errorf("section %s moved or grew: %#x+%#x, original %#x+%#x", s.Name, ps.Addr, ps.Size, s.Addr, s.Size)
		}
		switch s.Name {
		case ".dynsym", ".dynstr", ".rela.dyn", ".rela.plt", ".dynamic", ".gnu.version", ".gnu.version_r":
			a, _ := s.Data()
			b, _ := ps.Data()
			if !bytes.Equal(a, b) {
				t.Errorf("dynamic section %s changed", s.Name)
			}
		}
	}
	for _, s := range ep.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && eo.Section(s.Name) == nil {
			t.Errorf("the patched link has a new allocated section %s", s.Name)
		}
	}
	if ep.Section(".hotpatch.text") == nil && ep.Section(".hotpatch.data") == nil && ep.Section(".hotpatch.rodata") == nil {
		t.Errorf("the patched link has no patch sections")
	}
}

// checkRelocsKept checks that the link kept every relocation of every
// patch section, which extraction needs.
func checkRelocsKept(t *testing.T, objPath, binPath string) {
	t.Helper()
	obj := openELF(t, objPath)
	defer obj.Close()
	bin := openELF(t, binPath)
	defer bin.Close()
	for _, s := range obj.Sections {
		if !strings.HasPrefix(s.Name, ".rela.hotpatch.") {
			continue
		}
		ls := bin.Section(s.Name)
		if ls == nil {
			t.Errorf("the link dropped %s", s.Name)
			continue
		}
		if ls.Size != s.Size {
			t.Errorf("%s: %d bytes of relocations in the link, %d in the object", s.Name, ls.Size, s.Size)
		}
	}
}
