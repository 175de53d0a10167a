package extract

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const tmCloneScript = "SECTIONS { .tm_clone_table : { *(.tm_clone_table) } } INSERT BEFORE .data;\n"

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// linkPair compiles src with gcc at the given flags, appends the
// hand-written patch sections of patchFile (which follow the contract of
// docs/augmented-assembly.md) to gcc's own assembly, and links both: the
// original plainly, the augmented one with -q as the patched stage does.
func linkPair(t *testing.T, dir, src, patchFile string, flags, link []string) (orig, patched string) {
	t.Helper()
	srcAbs, _ := filepath.Abs(src)
	run(t, dir, "gcc", append(append([]string{}, flags...), "-S", srcAbs, "-o", "orig.s")...)
	origAsm, err := os.ReadFile(filepath.Join(dir, "orig.s"))
	if err != nil {
		t.Fatal(err)
	}
	patch, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "aug.s"), append(origAsm, patch...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tm.ld"), []byte(tmCloneScript), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "gcc", append(append(append([]string{}, flags...), "orig.s", "-o", "orig.out"), link...)...)
	patchedLink := append(append(append([]string{}, flags...), "aug.s", "-o", "patched.out", "-Wl,-q"), link...)
	if !hasSection(t, filepath.Join(dir, "orig.out"), ".tm_clone_table") {
		patchedLink = append(patchedLink, "-Wl,-T,tm.ld")
	}
	run(t, dir, "gcc", patchedLink...)
	return filepath.Join(dir, "orig.out"), filepath.Join(dir, "patched.out")
}

func hasSection(t *testing.T, path, name string) bool {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Section(name) != nil
}

// symbolOf returns the value and size of a symbol in an ELF file's .symtab,
// matching names with ld's @VERSION suffix stripped.
func symbolOf(t *testing.T, path, name string) elf.Symbol {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if stripVersion(s.Name) == name && s.Section != elf.SHN_UNDEF {
			return s
		}
	}
	t.Fatalf("%s has no symbol %s", path, name)
	return elf.Symbol{}
}

func findSym(t *testing.T, p *patchfile.Patch, name string) (uint32, patchfile.Symbol) {
	t.Helper()
	for i, s := range p.Symbols {
		if s.Name == name {
			return uint32(i), s
		}
	}
	t.Fatalf("patch has no symbol %q; symbols: %+v", name, p.Symbols)
	return 0, patchfile.Symbol{}
}

func sectionIndex(t *testing.T, p *patchfile.Patch, name string) uint32 {
	t.Helper()
	for i, s := range p.Sections {
		if s.Name == name {
			return uint32(i)
		}
	}
	t.Fatalf("patch has no section %s", name)
	return 0
}

func relocsAgainst(p *patchfile.Patch, sym uint32) []patchfile.Reloc {
	var out []patchfile.Reloc
	for _, r := range p.Relocs {
		if r.Symbol == sym {
			out = append(out, r)
		}
	}
	return out
}

func checkWellFormed(t *testing.T, p *patchfile.Patch) {
	t.Helper()
	for _, r := range p.Relocs {
		if int(r.Section) >= len(p.Sections) || int(r.Symbol) >= len(p.Symbols) {
			t.Fatalf("relocation %+v indexes outside the patch", r)
		}
		if r.Offset >= p.Sections[r.Section].Size {
			t.Errorf("relocation %+v lies outside %s", r, p.Sections[r.Section].Name)
		}
	}
	seen := map[string]bool{}
	for _, s := range p.Symbols[1:] {
		k := s.Kind.String() + "/" + s.Name + "/" + s.Version
		if s.Kind.InPatch() {
			continue
		}
		if seen[k] {
			t.Errorf("symbol %s appears twice", k)
		}
		seen[k] = true
	}
	// The writer and reader agree on everything extraction produced.
	enc, err := patchfile.Encode(p)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	back, err := patchfile.Decode(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(back.Symbols, p.Symbols) || !reflect.DeepEqual(back.Relocs, p.Relocs) || !reflect.DeepEqual(back.Funcs, p.Funcs) {
		t.Errorf("patch changed through encode/decode")
	}
}

func TestExtractExecutable(t *testing.T) {
	testutil.RequireGCC(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"pie", []string{"-O2", "-g", "-fPIE", "-pie"}},
		{"nopie", []string{"-O2", "-fno-pie", "-no-pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ext, _ := filepath.Abs("testdata/exe/libext.c")
			run(t, dir, "gcc", "-O2", "-fPIC", "-shared", ext, "-o", "libext.so")
			orig, patched := linkPair(t, dir, "testdata/exe/prog.c", "testdata/exe/patch.s", tc.flags, []string{"-L.", "-lext"})
			p, err := File(patched, orig, Options{Target: "prog", ID: "fix-compute", Level: 2})
			if err != nil {
				t.Fatal(err)
			}
			checkWellFormed(t, p)
			wantID, err := elfobj.BuildIDOfFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.BuildID, wantID) || p.ID != "fix-compute" || p.Level != 2 || p.Target != "prog" || p.Arch != elf.EM_X86_64 {
				t.Errorf("header: build-id %x id %q level %d target %q arch %v", p.BuildID, p.ID, p.Level, p.Target, p.Arch)
			}

			var names []string
			for _, s := range p.Sections {
				names = append(names, s.Name+":"+s.Kind.String())
			}
			if want := []string{".hotpatch.text:rx", ".hotpatch.rodata:ro", ".hotpatch.data:rw", ".hotpatch.bss:rw"}; !reflect.DeepEqual(names, want) {
				t.Errorf("sections %v, want %v", names, want)
			}
			bss := p.Sections[sectionIndex(t, p, ".hotpatch.bss")]
			if !bss.NoBits || bss.Size != 4 || len(bss.Data) != 0 {
				t.Errorf(".hotpatch.bss = %+v, want 4 zero bytes without data", bss)
			}

			compute := symbolOf(t, orig, "compute")
			newFn := symbolOf(t, patched, "compute.hotpatch")
			if len(p.Funcs) != 1 {
				t.Fatalf("function table %+v, want one entry", p.Funcs)
			}
			f := p.Funcs[0]
			if f.Name != "compute" || f.OldOffset != compute.Value || f.OldSize != compute.Size || f.NewSize != newFn.Size || f.Flags != 0 {
				t.Errorf("function entry %+v; compute is at %#x size %d, compute.hotpatch size %d", f, compute.Value, compute.Size, newFn.Size)
			}
			if ns := p.Symbols[f.NewSymbol]; ns.Kind != patchfile.SymPatch || ns.Value != 0 || p.Sections[ns.Section].Name != ".hotpatch.text" {
				t.Errorf("new entry symbol %+v", ns)
			}

			expectKind := func(name string, kind patchfile.SymbolKind, version string) patchfile.Symbol {
				t.Helper()
				_, s := findSym(t, p, name)
				if s.Kind != kind || s.Version != version {
					t.Errorf("%s: kind %v version %q, want %v %q", name, s.Kind, s.Version, kind, version)
				}
				return s
			}
			expectKind("puts", patchfile.SymExternal, "")
			expectKind("memcpy", patchfile.SymExternal, "")
			// printf is bound by the executable to a version: the patch
			// must ask for the same one.
			expectKind("printf", patchfile.SymExternal, "GLIBC_2.2.5")
			// stdout is copied into the executable: rule 2 resolves it
			// there, whichever way the patch refers to it.
			so := expectKind("stdout", patchfile.SymTarget, "")
			if want := symbolOf(t, orig, "stdout"); so.Value != want.Value {
				t.Errorf("stdout at %#x, the executable's copy is at %#x", so.Value, want.Value)
			}
			if s := expectKind("compute", patchfile.SymTarget, ""); s.Value != compute.Value {
				t.Errorf("compute resolved to %#x, want %#x", s.Value, compute.Value)
			}
			if s := expectKind("shared_value", patchfile.SymTarget, ""); s.Value != symbolOf(t, orig, "shared_value").Value {
				t.Errorf("shared_value resolved to %#x", s.Value)
			}
			if s := expectKind("tlsvar", patchfile.SymTLS, ""); s.Value != symbolOf(t, orig, "tlsvar").Value {
				t.Errorf("tlsvar at TLS offset %#x", s.Value)
			}
			nc := expectKind("new_counter", patchfile.SymNew, "")
			if p.Sections[nc.Section].Name != ".hotpatch.bss" {
				t.Errorf("new_counter in %s", p.Sections[nc.Section].Name)
			}

			// The static counter is reached through the .bss section
			// symbol: S + A must land 4 bytes before it (PC32 at the
			// displacement of a RIP-relative load).
			counter := symbolOf(t, orig, "counter")
			bssIdx, bssSym := findSym(t, p, ".bss")
			if bssSym.Kind != patchfile.SymTarget {
				t.Fatalf(".bss section symbol is %v", bssSym.Kind)
			}
			rs := relocsAgainst(p, bssIdx)
			if len(rs) != 2 {
				t.Fatalf("relocations against .bss: %+v", rs)
			}
			for _, r := range rs {
				if got := int64(bssSym.Value) + r.Addend; got != int64(counter.Value)-4 {
					t.Errorf("counter reference resolves to %#x, want %#x", got, counter.Value-4)
				}
			}

			tlsIdx, tlsSym := findSym(t, p, "ext_tls")
			if tlsSym.Kind != patchfile.SymExternalTLS {
				t.Errorf("ext_tls is %v", tlsSym.Kind)
			}
			dataIdx := sectionIndex(t, p, ".hotpatch.data")
			types := map[uint64]elf.R_X86_64{}
			for _, r := range relocsAgainst(p, tlsIdx) {
				if r.Section != dataIdx {
					t.Errorf("TLS slot relocation outside .hotpatch.data: %+v", r)
				}
				types[r.Offset] = elf.R_X86_64(r.Type)
			}
			if want := map[uint64]elf.R_X86_64{8: elf.R_X86_64_TPOFF64, 16: elf.R_X86_64_DTPMOD64, 24: elf.R_X86_64_DTPOFF64}; !reflect.DeepEqual(types, want) {
				t.Errorf("TLS slots %v, want %v", types, want)
			}
		})
	}
}

func TestExtractSharedLibrary(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	dir := t.TempDir()
	orig, patched := linkPair(t, dir, "testdata/lib/lib.c", "testdata/lib/patch.s", []string{"-O2", "-fPIC", "-shared"}, nil)
	p, err := File(patched, orig, Options{Target: "liblib.so", ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, p)
	hidden := symbolOf(t, orig, "lib_hidden")
	entry := symbolOf(t, orig, "lib_entry")

	// A hidden function is not exported: reached inside the library.
	_, hs := findSym(t, p, "lib_hidden")
	if hs.Kind != patchfile.SymTarget || hs.Value != hidden.Value {
		t.Errorf("lib_hidden = %+v, want target at %#x", hs, hidden.Value)
	}
	// An exported function of a library may be interposed: by name.
	if _, s := findSym(t, p, "lib_exported"); s.Kind != patchfile.SymExternal {
		t.Errorf("lib_exported = %+v, want external", s)
	}
	if _, s := findSym(t, p, "__gxx_personality_v0"); s.Kind != patchfile.SymExternal {
		t.Errorf("personality = %+v", s)
	}
	eh := p.Sections[sectionIndex(t, p, ".hotpatch.eh_frame")]
	if eh.Kind != patchfile.SectionROData || eh.Align != 8 {
		t.Errorf(".hotpatch.eh_frame = kind %v align %d", eh.Kind, eh.Align)
	}

	if len(p.Funcs) != 2 {
		t.Fatalf("functions %+v", p.Funcs)
	}
	if f := p.Funcs[0]; f.Name != "lib_entry" || f.OldOffset != entry.Value || f.OldSize != entry.Size || f.Flags != 0 {
		t.Errorf("entry 0 = %+v, lib_entry at %#x", f, entry.Value)
	}
	f := p.Funcs[1]
	if f.Name != "lib_hidden" || f.OldOffset != hidden.Value || f.Flags != patchfile.FuncRangeOnly {
		t.Errorf("entry 1 = %+v", f)
	}
	if ns := p.Symbols[f.NewSymbol]; ns.Name != "lib_entry.cold.hotpatch" || ns.Value != symbolOf(t, patched, "lib_entry.cold.hotpatch").Value || f.NewSize != 2 {
		t.Errorf("entry 1 new symbol %+v size %d", ns, f.NewSize)
	}
}

func TestExtractNoPatchSections(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	dir := t.TempDir()
	src, _ := filepath.Abs("testdata/lib/lib.c")
	run(t, dir, "gcc", "-O2", "-fPIC", "-shared", src, "-o", "lib.so", "-Wl,-q")
	lib := filepath.Join(dir, "lib.so")
	_, err := File(lib, lib, Options{})
	if !errors.Is(err, ErrNoPatch) {
		t.Fatalf("err = %v, want ErrNoPatch", err)
	}
}

func TestExtractRefusesUnknownUndefinedSymbol(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	dir := t.TempDir()
	patch := filepath.Join(dir, "bad.s")
	if err := os.WriteFile(patch, []byte("# hotpatch: patch sections follow\n\t.section .hotpatch.data,\"w\",@progbits\n\t.quad 0\n\t.quad not_a_placeholder\n\t.weak not_a_placeholder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig, patched := linkPair(t, dir, "testdata/lib/lib.c", patch, []string{"-O2", "-fPIC", "-shared"}, nil)
	_, err := File(patched, orig, Options{})
	var re *RelocError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *RelocError", err)
	}
	if re.Symbol != "not_a_placeholder" || re.Section != ".hotpatch.data" || re.Offset != 8 || !strings.Contains(err.Error(), patched) {
		t.Errorf("error %q does not name the symbol, the place and the object", err)
	}
}

func TestExtractRefusesAllocatedPatchSection(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	dir := t.TempDir()
	patch := filepath.Join(dir, "alloc.s")
	if err := os.WriteFile(patch, []byte("# hotpatch: patch sections follow\n\t.section .hotpatch.text,\"ax\",@progbits\n\tret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig, patched := linkPair(t, dir, "testdata/lib/lib.c", patch, []string{"-O2", "-fPIC", "-shared"}, nil)
	if _, err := File(patched, orig, Options{}); err == nil || !strings.Contains(err.Error(), "allocated") {
		t.Fatalf("err = %v, want a refusal of the allocated section", err)
	}
}

// FuzzExtract feeds mutated patched links to extraction, which must return
// an error rather than panic. The seed is a real -q link built by gcc.
func FuzzExtract(f *testing.F) {
	if _, err := exec.LookPath("gcc"); err != nil {
		f.Skip("skipped: gcc is not installed; the seed is built with it")
	}
	dir := f.TempDir()
	src, _ := filepath.Abs("testdata/lib/lib.c")
	patchSrc, _ := filepath.Abs("testdata/lib/patch.s")
	build := func(args ...string) {
		cmd := exec.Command("gcc", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			f.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	build("-O2", "-fPIC", "-S", src, "-o", "orig.s")
	origAsm, _ := os.ReadFile(filepath.Join(dir, "orig.s"))
	patchAsm, _ := os.ReadFile(patchSrc)
	os.WriteFile(filepath.Join(dir, "aug.s"), append(origAsm, patchAsm...), 0o644)
	build("-shared", "orig.s", "-o", "orig.so")
	build("-shared", "aug.s", "-o", "patched.so", "-Wl,-q")
	seed, err := os.ReadFile(filepath.Join(dir, "patched.so"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	of, err := elf.Open(filepath.Join(dir, "orig.so"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		_, _ = Extract(pf, of, "fuzz", Options{})
	})
}
