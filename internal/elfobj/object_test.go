package elfobj

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// subjects are the objects every readelf comparison runs over: gcc output
// of each kind, and the system C library.
func subjects(t *testing.T) map[string]string {
	exe, lib := buildLibUser(t)
	m := map[string]string{
		"pie":     buildProg(t, true),
		"non-pie": buildProg(t, false),
		"shared":  lib,
		"libuser": exe,
	}
	if _, err := os.Stat(systemLibc); err == nil {
		m["libc"] = systemLibc
	} else {
		t.Logf("system libc not checked: %s is missing on this machine (%v)", systemLibc, err)
	}
	return m
}

func TestMatchesReadelf(t *testing.T) {
	for name, path := range subjects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			checkSegments(t, o, path)
			checkSymbols(t, o, path)
			checkRelocs(t, o, path)
			checkFrameSections(t, o, path)
			id, err := BuildIDOfFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(id, o.BuildID) {
				t.Errorf("build-id %x, BuildIDOfFile says %x", o.BuildID, id)
			}
		})
	}
}

func checkSegments(t *testing.T, o *Object, path string) {
	var loads []Segment
	var tls, ehf *Segment
	for _, s := range readelfSegments(t, path) {
		switch s.Type {
		case elf.PT_LOAD:
			loads = append(loads, s)
		case elf.PT_TLS:
			tls = &s
		case elf.PT_GNU_EH_FRAME:
			ehf = &s
		}
	}
	if len(loads) != len(o.Loads) {
		t.Fatalf("%d PT_LOAD segments, readelf shows %d", len(o.Loads), len(loads))
	}
	for i := range loads {
		if loads[i] != o.Loads[i] {
			t.Errorf("PT_LOAD %d: %+v, readelf shows %+v", i, o.Loads[i], loads[i])
		}
	}
	switch {
	case tls == nil && o.TLS != nil:
		t.Errorf("TLS %+v, readelf shows none", *o.TLS)
	case tls != nil && o.TLS == nil:
		t.Errorf("no TLS, readelf shows %+v", *tls)
	case tls != nil:
		want := TLS{Vaddr: tls.Vaddr, Offset: tls.Offset, Filesz: tls.Filesz, Memsz: tls.Memsz, Align: tls.Align}
		if *o.TLS != want {
			t.Errorf("TLS %+v, readelf shows %+v", *o.TLS, want)
		}
	}
	if (ehf == nil) != (o.GNUEHFrame == nil) || ehf != nil && *ehf != *o.GNUEHFrame {
		t.Errorf("PT_GNU_EH_FRAME %+v, readelf shows %+v", o.GNUEHFrame, ehf)
	}
}

var readelfTypes = map[elf.SymType]string{
	elf.STT_NOTYPE: "NOTYPE", elf.STT_OBJECT: "OBJECT", elf.STT_FUNC: "FUNC",
	elf.STT_TLS: "TLS", elf.STT_GNU_IFUNC: "IFUNC", elf.STT_COMMON: "COMMON",
}

var readelfBinds = map[elf.SymBind]string{
	elf.STB_LOCAL: "LOCAL", elf.STB_GLOBAL: "GLOBAL", elf.STB_WEAK: "WEAK", stbGNUUnique: "UNIQUE",
}

func checkSymbols(t *testing.T, o *Object, path string) {
	// readelf lists the null entry of .dynsym, which Object drops, like
	// every nameless entry.
	var want []readelfSym
	for _, w := range readelfSymbols(t, path) {
		if w.name != "" {
			want = append(want, w)
		}
	}
	var gotNamed []Symbol
	for _, s := range o.Symbols() {
		if s.Name != "" {
			gotNamed = append(gotNamed, s)
		}
	}
	if len(gotNamed) != len(want) {
		t.Fatalf("%d named symbols, readelf shows %d", len(gotNamed), len(want))
	}
	for i, w := range want {
		g := gotNamed[i]
		table := ".symtab"
		if g.Dynamic {
			table = ".dynsym"
		}
		vis := strings.TrimPrefix(g.Visibility.String(), "STV_")
		if table != w.table || g.String() != w.name || g.Value != w.value || g.Size != w.size ||
			readelfTypes[g.Type] != w.typ || readelfBinds[g.Bind] != w.bind || vis != w.vis ||
			(w.ndx == "UND") != !g.Defined() {
			t.Errorf("symbol %d: %s %s value %#x size %d %s %s %s defined=%v; readelf: %+v",
				i, table, g.String(), g.Value, g.Size, readelfTypes[g.Type], readelfBinds[g.Bind], vis, g.Defined(), w)
		}
	}
}

func checkRelocs(t *testing.T, o *Object, path string) {
	want := readelfRelocs(t, path)
	got := o.DynRelocs()
	if len(got) != len(want) {
		t.Fatalf("%d dynamic relocations, readelf shows %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Offset != w.offset || g.Type != w.typ || g.Symbol.String() != w.sym || g.Addend != w.addend {
			t.Errorf("relocation %d: offset %#x type %d symbol %q addend %d; readelf: %+v",
				i, g.Offset, g.Type, g.Symbol.String(), g.Addend, w)
		}
	}
}

func checkFrameSections(t *testing.T, o *Object, path string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		blob Blob
	}{{".eh_frame", o.EHFrame}, {".eh_frame_hdr", o.EHFrameHdr}} {
		s := f.Section(c.name)
		if s == nil {
			if len(c.blob.Data) != 0 {
				t.Errorf("%s: %d bytes, but the file has no such section", c.name, len(c.blob.Data))
			}
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if c.blob.Addr != s.Addr || !bytes.Equal(c.blob.Data, data) {
			t.Errorf("%s at %#x (%d bytes), section is at %#x (%d bytes)", c.name, c.blob.Addr, len(c.blob.Data), s.Addr, len(data))
		}
	}
}

func TestObjectKinds(t *testing.T) {
	exe, lib := buildLibUser(t)
	for _, c := range []struct {
		path       string
		typ        elf.Type
		executable bool
	}{
		{buildProg(t, true), elf.ET_DYN, true},
		{buildProg(t, false), elf.ET_EXEC, true},
		{lib, elf.ET_DYN, false},
		{exe, elf.ET_DYN, true},
	} {
		o, err := Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if o.Type != c.typ || o.IsExecutable() != c.executable || o.Machine != elf.EM_X86_64 {
			t.Errorf("%s: type %v executable %v machine %v, want %v %v EM_X86_64", c.path, o.Type, o.IsExecutable(), o.Machine, c.typ, c.executable)
		}
	}
	if _, err := os.Stat(systemLibc); err == nil {
		o, err := Open(systemLibc)
		if err != nil {
			t.Fatal(err)
		}
		if o.IsExecutable() || o.Soname != "libc.so.6" {
			t.Errorf("libc: executable %v soname %q; it is a library (with a program interpreter, being runnable)", o.IsExecutable(), o.Soname)
		}
	}
	o, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	if o.Soname != "" || len(o.Needed) == 0 || o.Needed[0] != "libc.so.6" {
		t.Errorf("libt.so: soname %q needed %q", o.Soname, o.Needed)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLookupVersionsInLibrary(t *testing.T) {
	o, err := Open(buildLib(t))
	if err != nil {
		t.Fatal(err)
	}
	v1 := mustLookup(t, o, "lib_foo_v1")
	v2 := mustLookup(t, o, "lib_foo_v2")
	if v1.Value == v2.Value {
		t.Fatalf("lib_foo_v1 and lib_foo_v2 share an address %#x", v1.Value)
	}
	for _, c := range []struct {
		name       string
		value      uint64
		version    string
		nonDefault bool
	}{
		{"lib_foo", v2.Value, "LIBT_2", false},
		{"lib_foo@@LIBT_2", v2.Value, "LIBT_2", false},
		{"lib_foo@LIBT_2", v2.Value, "LIBT_2", false},
		{"lib_foo@LIBT_1", v1.Value, "LIBT_1", true},
	} {
		for _, exported := range []bool{false, true} {
			lookup := o.Lookup
			if exported {
				lookup = o.LookupExported
			}
			s, err := lookup(c.name)
			if err != nil {
				t.Errorf("lookup %s (exported only: %v): %v", c.name, exported, err)
				continue
			}
			if s.Value != c.value || s.Version != c.version || s.NonDefault != c.nonDefault || !s.Exported() {
				t.Errorf("lookup %s: got %s at %#x nondefault=%v exported=%v", c.name, s, s.Value, s.NonDefault, s.Exported())
			}
		}
	}
	// A non-default version is reachable only by naming it.
	if s, err := o.Lookup("lib_foo@@LIBT_1"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("lib_foo@@LIBT_1 (not the default) found %s, err %v", s, err)
	}
	var se *SymbolError
	if _, err := o.Lookup("lib_foo@LIBT_9"); !errors.As(err, &se) || se.Name != "lib_foo@LIBT_9" || !strings.Contains(err.Error(), o.Path) {
		t.Errorf("unknown version: %v", err)
	}

	hidden := mustLookup(t, o, "lib_hidden")
	if hidden.Exported() || hidden.Dynamic {
		t.Errorf("lib_hidden: exported=%v dynamic=%v", hidden.Exported(), hidden.Dynamic)
	}
	if _, err := o.LookupExported("lib_hidden"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("hidden symbol exported lookup: %v", err)
	}
	prot := mustLookup(t, o, "lib_protected")
	if !prot.Exported() || prot.Visibility != elf.STV_PROTECTED {
		t.Errorf("lib_protected: exported=%v visibility %v", prot.Exported(), prot.Visibility)
	}
	if ifn := mustLookup(t, o, "lib_ifn"); !ifn.IsIFunc() || !ifn.IsFunc() || ifn.IsTLS() || !ifn.Exported() {
		t.Errorf("lib_ifn: %+v", ifn)
	}
	for _, name := range []string{"lib_gd_var", "lib_ie_var", "lib_local_tls"} {
		if s := mustLookup(t, o, name); !s.IsTLS() || s.IsFunc() {
			t.Errorf("%s: type %v", name, s.Type)
		}
	}
	if s := mustLookup(t, o, "lib_local_tls"); s.Exported() || s.Bind != elf.STB_LOCAL {
		t.Errorf("lib_local_tls: %+v", s)
	}
	if _, err := o.Lookup("memcpy"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("memcpy is only imported by libt.so, lookup gave %v", err)
	}
	if v, lib, ok := o.BoundVersion("memcpy"); !ok || v != "GLIBC_2.14" || lib != "libc.so.6" {
		t.Errorf("memcpy binds to %q from %q (ok %v), want GLIBC_2.14 from libc.so.6", v, lib, ok)
	}
	if _, _, ok := o.BoundVersion("lib_use"); ok {
		t.Error("lib_use is defined, not imported, yet has a bound version")
	}
}

func mustLookup(t *testing.T, o *Object, name string) Symbol {
	t.Helper()
	s, err := o.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != strings.SplitN(name, "@", 2)[0] {
		t.Fatalf("lookup %s returned %s", name, s)
	}
	return s
}

func TestLookupSystemLibc(t *testing.T) {
	if _, err := os.Stat(systemLibc); err != nil {
		t.Skipf("skipped: %s is missing (%v); the test checks the versions Debian's glibc defines", systemLibc, err)
	}
	o, err := Open(systemLibc)
	if err != nil {
		t.Fatal(err)
	}
	def := mustLookup(t, o, "memcpy")
	if def.Version != "GLIBC_2.14" || def.NonDefault || !def.IsIFunc() || !def.Exported() {
		t.Errorf("memcpy: %s type %v nondefault %v", def, def.Type, def.NonDefault)
	}
	old := mustLookup(t, o, "memcpy@GLIBC_2.2.5")
	if !old.NonDefault || old.Value == def.Value || old.String() != "memcpy@GLIBC_2.2.5" {
		t.Errorf("memcpy@GLIBC_2.2.5: %s at %#x nondefault %v", old, old.Value, old.NonDefault)
	}
	if _, err := o.Lookup("memcpy@@GLIBC_2.2.5"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("memcpy@@GLIBC_2.2.5: %v", err)
	}
	if e := mustLookup(t, o, "errno"); !e.IsTLS() || !e.Exported() {
		t.Errorf("errno: %s type %v", e, e.Type)
	}
	if s := mustLookup(t, o, "stdout"); s.Type != elf.STT_OBJECT || s.Size != 8 {
		t.Errorf("stdout: %+v", s)
	}
	if f, ok := o.FuncAt(def.Value + 3); !ok || f.Value != def.Value {
		t.Errorf("FuncAt inside memcpy's resolver: %s %v", f, ok)
	}
}

func TestAmbiguousLocals(t *testing.T) {
	o, err := Open(testutil.BuildFixture(t, testutil.Build{Dir: "testdata/dup", Flags: []string{"-O0"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"helper", "state"} {
		_, err := o.Lookup(name)
		var se *SymbolError
		if !errors.Is(err, ErrAmbiguousSymbol) || !errors.As(err, &se) || len(se.Candidates) != 2 {
			t.Errorf("lookup %s: %v", name, err)
			continue
		}
		if se.Candidates[0].Value == se.Candidates[1].Value {
			t.Errorf("%s: both candidates at %#x", name, se.Candidates[0].Value)
		}
		if all := o.SymbolsNamed(name); len(all) != 2 {
			t.Errorf("SymbolsNamed(%s) = %d symbols", name, len(all))
		}
	}
	if s := mustLookup(t, o, "b_entry"); s.Bind != elf.STB_GLOBAL {
		t.Errorf("b_entry: %+v", s)
	}
}

func TestFuncAt(t *testing.T) {
	for _, path := range []string{buildProg(t, true), buildProg(t, false), buildLib(t)} {
		o, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, s := range o.Symbols() {
			if !s.IsFunc() || !s.Defined() || s.Size == 0 {
				continue
			}
			for _, addr := range []uint64{s.Value, s.Value + s.Size/2, s.Value + s.Size - 1} {
				f, ok := o.FuncAt(addr)
				if !ok || f.Value != s.Value || f.Size != s.Size {
					t.Errorf("%s: FuncAt(%#x) inside %s = %s at %#x+%d (%v)", path, addr, s.Name, f, f.Value, f.Size, ok)
				}
			}
			checked++
		}
		if checked < 3 {
			t.Fatalf("%s: only %d sized functions", path, checked)
		}
		if f, ok := o.FuncAt(0); ok {
			t.Errorf("%s: FuncAt(0) = %s", path, f)
		}
	}
}

func TestLoadBiasErrors(t *testing.T) {
	o, err := Open(buildProg(t, true))
	if err != nil {
		t.Fatal(err)
	}
	last := o.Loads[len(o.Loads)-1]
	if _, err := o.LoadBias(Mapping{Start: 0x7f0000000000, Offset: pageDown(last.Offset+last.Filesz) + 16*pageSize}); !errors.Is(err, ErrNoSegment) || !strings.Contains(err.Error(), o.Path) {
		t.Errorf("offset beyond the file: %v", err)
	}
	if _, err := o.LoadBias(); err == nil {
		t.Error("no mappings: no error")
	}
	// A mapping of the second half of a segment (as RELRO protection
	// splits the data segment) gives the same bias as its first page.
	const base = 0x555555554000
	for _, l := range o.Loads {
		if l.Filesz < 2*pageSize {
			continue
		}
		exec := l.Flags&elf.PF_X != 0
		start := base + pageDown(l.Vaddr)
		b1, err1 := o.LoadBias(Mapping{Start: start, End: start + pageSize, Offset: pageDown(l.Offset), Exec: exec})
		b2, err2 := o.LoadBias(Mapping{Start: start + pageSize, End: start + 2*pageSize, Offset: pageDown(l.Offset) + pageSize, Exec: exec})
		if err1 != nil || err2 != nil || b1 != b2 || b1 != base {
			t.Errorf("segment at %#x: bias %#x (%v) and %#x (%v)", l.Vaddr, b1, err1, b2, err2)
		}
	}
}

func TestLiveExecutable(t *testing.T) {
	testutil.RequirePtrace(t)
	for _, pie := range []bool{true, false} {
		name := map[bool]string{true: "pie", false: "non-pie"}[pie]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := buildProg(t, pie)
			o, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			p := testutil.Start(t, path, "hello")
			p.WaitFor(t, 0, "ready\n", 10*time.Second)
			out := p.Output()
			bias := biasOf(t, o, p.Pid, path)
			if !pie && bias != 0 {
				t.Errorf("non-PIE bias %#x", bias)
			}
			for _, fn := range []string{"prog_global", "main"} {
				if got, want := bias+mustLookup(t, o, fn).Value, reported(t, out, fn); got != want {
					t.Errorf("%s at %#x, the program says %#x", fn, got, want)
				}
			}

			// stdout is copied into the executable: its definition there
			// is what the program uses.
			stdout, err := o.LookupExported("stdout")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := bias+stdout.Value, reported(t, out, "stdout"); got != want {
				t.Errorf("stdout at %#x, the program says %#x", got, want)
			}
			if v, lib, ok := o.BoundVersion("memcpy"); !ok || v != "GLIBC_2.14" || lib != "libc.so.6" {
				t.Errorf("memcpy binds to %s from %s (%v)", v, lib, ok)
			}

			// memcpy is an ifunc: the program's GOT holds the
			// implementation libc's resolver chose.
			slots := o.GOTSlots("memcpy")
			if len(slots) == 0 {
				t.Fatal("no GOT slot for memcpy")
			}
			for _, s := range slots {
				val := readWord(t, p.Pid, bias+s.Offset)
				switch s.Kind {
				case SlotGlobDat:
					if want := reported(t, out, "memcpy"); val != want {
						t.Errorf("GLOB_DAT slot of memcpy holds %#x, the program took %#x", val, want)
					}
				case SlotJumpSlot:
					if !inLibc(t, p.Pid, val) && !o.inPLT(val-bias) {
						t.Errorf("JUMP_SLOT of memcpy holds %#x: neither libc code nor this PLT", val)
					}
				default:
					t.Errorf("memcpy slot of kind %v", s.Kind)
				}
				if s.Symbol.Version != "GLIBC_2.14" {
					t.Errorf("memcpy slot names %s", s.Symbol)
				}
			}

			// The executable's own ifunc is bound through IRELATIVE to
			// the implementation its resolver returns.
			impl := mustLookup(t, o, "prog_ifn_impl")
			islots := o.GOTSlots("prog_ifn")
			if len(islots) != 1 || islots[0].Kind != SlotIRelative {
				t.Fatalf("prog_ifn slots: %+v", islots)
			}
			if val := readWord(t, p.Pid, bias+islots[0].Offset); val != bias+impl.Value {
				t.Errorf("IRELATIVE slot of prog_ifn holds %#x, prog_ifn_impl is at %#x", val, bias+impl.Value)
			}

			off, err := o.ExecutableTLSOffset()
			if err != nil {
				t.Fatal(err)
			}
			tp := reported(t, out, "tp")
			for _, c := range []struct{ sym, key string }{{"prog_tls_le", "tls_le"}, {"prog_tls_ie", "tls_ie"}} {
				s := mustLookup(t, o, c.sym)
				if got, want := tp+uint64(off)+s.Value, reported(t, out, c.key); got != want {
					t.Errorf("%s at tp%+d+%#x = %#x, the program says %#x", c.sym, off, s.Value, got, want)
				}
			}
		})
	}
}

// inPLT reports whether a link-time address is in a PLT section, where an
// unbound lazy slot points.
func (o *Object) inPLT(addr uint64) bool {
	f, err := elf.Open(o.Path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".plt") && addr >= s.Addr && addr < s.Addr+s.Size {
			return true
		}
	}
	return false
}

func inLibc(t *testing.T, pid int, addr uint64) bool {
	for _, m := range readMaps(t, pid) {
		if m.Perms.Exec && strings.Contains(m.Path, "libc.so") && addr >= m.Start && addr < m.End {
			return true
		}
	}
	return false
}

func TestLiveLibraryTLS(t *testing.T) {
	testutil.RequirePtrace(t)
	exe, lib := buildLibUser(t)
	o, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	p := testutil.Start(t, exe)
	p.WaitFor(t, 0, "ready\n", 10*time.Second)
	out := p.Output()
	bias := biasOf(t, o, p.Pid, lib)
	if want := reported(t, out, "base"); bias != want {
		t.Errorf("load bias %#x, dl_iterate_phdr says %#x", bias, want)
	}
	if got, want := bias+mustLookup(t, o, "lib_use").Value, reported(t, out, "lib_use"); got != want {
		t.Errorf("lib_use at %#x, the program says %#x", got, want)
	}
	if foo := reported(t, out, "foo"); foo != 2 {
		t.Errorf("lib_foo() returned %d in the process: it bound to the wrong version", foo)
	}
	modid := reported(t, out, "modid")
	tp := reported(t, out, "tp")

	// initial-exec: a TPOFF slot holds the variable's offset from tp.
	ie := o.GOTSlots("lib_ie_var")
	if len(ie) != 1 || ie[0].Kind != SlotTPOff {
		t.Fatalf("lib_ie_var slots: %+v", ie)
	}
	if got, want := readWord(t, p.Pid, bias+ie[0].Offset), reported(t, out, "lib_ie_var")-tp; got != want {
		t.Errorf("TPOFF slot of lib_ie_var holds %#x, the variable is at tp%+d", got, int64(want))
	}

	// general-dynamic: a DTPMOD slot holds the module id and a DTPOFF
	// slot the offset in the module's block.
	gd := mustLookup(t, o, "lib_gd_var")
	kinds := map[SlotKind]uint64{}
	for _, s := range o.GOTSlots("lib_gd_var") {
		kinds[s.Kind] = readWord(t, p.Pid, bias+s.Offset)
	}
	if kinds[SlotDTPMod] != modid || kinds[SlotDTPOff] != gd.Value || len(kinds) != 2 {
		t.Errorf("lib_gd_var slots hold %v; module id is %d and its offset %#x", kinds, modid, gd.Value)
	}
	mods := o.ModuleIDSlots()
	if len(mods) < 2 {
		t.Errorf("module id slots: %+v (want the local-dynamic one and lib_gd_var's)", mods)
	}
	for _, s := range mods {
		if v := readWord(t, p.Pid, bias+s.Offset); v != modid {
			t.Errorf("module id slot at %#x holds %d, dl_iterate_phdr says %d", s.Offset, v, modid)
		}
	}
	if _, err := o.ExecutableTLSOffset(); err == nil {
		t.Error("a shared library has no fixed TLS offset, yet ExecutableTLSOffset succeeded")
	}

	user, err := Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	if v, l, ok := user.BoundVersion("lib_foo"); !ok || v != "LIBT_2" || l != "libt.so" {
		t.Errorf("lib_foo binds to %s from %s (%v)", v, l, ok)
	}
	if _, err := user.ExecutableTLSOffset(); !errors.Is(err, ErrNoTLS) {
		t.Errorf("executable without TLS: %v", err)
	}
}

// TestWithoutSectionHeaders checks that a file stripped of its section
// headers still yields its build-id and call frame information from the
// program headers.
func TestWithoutSectionHeaders(t *testing.T) {
	path := buildProg(t, true)
	full, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// e_shoff (8 bytes at 0x28), e_shnum (0x3c), e_shstrndx (0x3e).
	copy(data[0x28:0x30], make([]byte, 8))
	copy(data[0x3c:0x40], make([]byte, 4))
	o, err := New(bytes.NewReader(data), "no-sections")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.BuildID, full.BuildID) || len(o.BuildID) == 0 {
		t.Errorf("build-id %x, with sections %x", o.BuildID, full.BuildID)
	}
	if o.EHFrameHdr.Addr != full.EHFrameHdr.Addr || !bytes.Equal(o.EHFrameHdr.Data, full.EHFrameHdr.Data) {
		t.Errorf(".eh_frame_hdr at %#x (%d bytes), with sections %#x (%d)", o.EHFrameHdr.Addr, len(o.EHFrameHdr.Data), full.EHFrameHdr.Addr, len(full.EHFrameHdr.Data))
	}
	if o.EHFrame.Addr != full.EHFrame.Addr || !bytes.HasPrefix(o.EHFrame.Data, full.EHFrame.Data) {
		t.Errorf(".eh_frame at %#x (%d bytes), with sections %#x (%d)", o.EHFrame.Addr, len(o.EHFrame.Data), full.EHFrame.Addr, len(full.EHFrame.Data))
	}
	if len(o.Loads) != len(full.Loads) || o.TLS == nil {
		t.Errorf("segments lost: %d loads, TLS %v", len(o.Loads), o.TLS)
	}
}

// BenchmarkOpenLibc is what reading the C library costs the patcher's
// planning step, outside the pause (once per file, then cached).
func BenchmarkOpenLibc(b *testing.B) {
	if _, err := os.Stat(systemLibc); err != nil {
		b.Skipf("skipped: %s is missing (%v)", systemLibc, err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Open(systemLibc); err != nil {
			b.Fatal(err)
		}
	}
}
