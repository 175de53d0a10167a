package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/cfi"
	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// cfiSubjects are objects whose call frame information the table tests
// read: gcc output of the fixtures and the system's libraries, whose
// hand-written assembly has the unusual rules (signal trampolines, PLT
// expressions, remember/restore state).
func cfiSubjects(t *testing.T) map[string]string {
	m := map[string]string{
		"stacks-O2": buildStacks(t, stackVariants["O2"]),
		"stacks-O0": buildStacks(t, stackVariants["O0"]),
		"cxx-O2":    buildCXX(t),
	}
	for name, path := range map[string]string{
		"libc":      "/lib/x86_64-linux-gnu/libc.so.6",
		"ld.so":     "/lib64/ld-linux-x86-64.so.2",
		"libstdc++": "/lib/x86_64-linux-gnu/libstdc++.so.6",
		"libgcc_s":  "/lib/x86_64-linux-gnu/libgcc_s.so.1",
		"libm":      "/lib/x86_64-linux-gnu/libm.so.6",
	} {
		if _, err := os.Stat(path); err == nil {
			m[name] = path
		} else {
			t.Logf("%s not checked: %v", path, err)
		}
	}
	return m
}

func buildCXX(t testing.TB) string {
	return testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxx", Flags: []string{"-O2", "-pthread", "-Wl,--build-id"}})
}

func openTable(t testing.TB, path string, withHdr bool) (*Table, *elfobj.Object) {
	t.Helper()
	o, err := elfobj.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr := Section{Addr: o.EHFrameHdr.Addr, Data: o.EHFrameHdr.Data}
	if !withHdr {
		hdr = Section{}
	}
	tab, err := NewTable(AMD64, path, Section{Addr: o.EHFrame.Addr, Data: o.EHFrame.Data}, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if withHdr && len(hdr.Data) > 0 && !tab.FromHdr() {
		t.Fatalf("%s: .eh_frame_hdr was not used", path)
	}
	return tab, o
}

// readelfFDE is one FDE of `readelf -wF` with its rows.
type readelfFDE struct {
	begin, end uint64
	cols       []string
	rows       []readelfRow
}

type readelfRow struct {
	loc  uint64
	cfa  string
	vals []string
}

func readelfFrames(t *testing.T, path string) []readelfFDE {
	testutil.RequireTools(t, "readelf")
	// readelf also follows the debug link to the separate debug file,
	// whose .eh_frame is NOBITS, and exits 1 complaining about it; only
	// the object's own .eh_frame section of the output is read.
	out, err := exec.Command("readelf", "-wF", path).Output()
	if err != nil && !bytes.Contains(out, []byte("Contents of the .eh_frame section")) {
		t.Fatalf("readelf -wF %s: %v", path, err)
	}
	var fdes []readelfFDE
	var cur *readelfFDE
	inEHFrame := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Contents of the ") {
			inEHFrame = strings.HasPrefix(line, "Contents of the .eh_frame section")
			cur = nil
			continue
		}
		if !inEHFrame {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && f[3] == "FDE":
			pc := strings.TrimPrefix(f[5], "pc=")
			be := strings.SplitN(pc, "..", 2)
			fdes = append(fdes, readelfFDE{begin: hexU(t, be[0]), end: hexU(t, be[1])})
			cur = &fdes[len(fdes)-1]
		case len(f) >= 4 && f[3] == "CIE":
			cur = nil
		case cur != nil && len(f) >= 2 && f[0] == "LOC" && f[1] == "CFA":
			cur.cols = f[2:]
		case cur != nil && len(f) >= 2 && len(f[0]) == 16:
			// A register rule reads "r9 (r9)": number, then name.
			var vals []string
			for _, v := range f[2:] {
				if !strings.HasPrefix(v, "(") {
					vals = append(vals, v)
				}
			}
			cur.rows = append(cur.rows, readelfRow{loc: hexU(t, f[0]), cfa: f[1], vals: vals})
		}
	}
	return fdes
}

// render writes a rule as readelf does.
func render(t *Table, r rule, column string) string {
	switch r.kind {
	case ruleUnspecified:
		return "u"
	case ruleSame:
		return "s"
	case ruleUndefined:
		return "u"
	case ruleOffset:
		return fmt.Sprintf("c%+d", r.off)
	case ruleValOffset:
		return fmt.Sprintf("v%+d", r.off)
	case ruleRegister:
		return fmt.Sprintf("r%d", r.reg)
	case ruleExpression:
		return "exp"
	case ruleValExpression:
		return "vexp"
	}
	return "?"
}

func readelfRegName(n int) string {
	if n == 16 {
		return "ra"
	}
	return AMD64.RegName(n)
}

func renderCFA(c cfaRule) string {
	if c.isExpr {
		return "exp"
	}
	return fmt.Sprintf("%s%+d", AMD64.RegName(c.reg), c.off)
}

// TestTableMatchesReadelf computes the rule row at every location
// readelf's interpreter lists, for every FDE of real objects, and checks
// that both give the same CFA and the same rule for every register,
// with the table built from .eh_frame_hdr and by walking .eh_frame.
func TestTableMatchesReadelf(t *testing.T) {
	for name, path := range cfiSubjects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := readelfFrames(t, path)
			for _, withHdr := range []bool{true, false} {
				tab, _ := openTable(t, path, withHdr)
				compareWithReadelf(t, tab, want)
			}
		})
	}
}

func compareWithReadelf(t *testing.T, tab *Table, want []readelfFDE) {
	var nonEmpty []readelfFDE
	for _, f := range want {
		if f.end > f.begin {
			nonEmpty = append(nonEmpty, f)
		}
	}
	if tab.Len() != len(nonEmpty) {
		t.Fatalf("%d FDEs (from hdr: %v), readelf lists %d with a code range", tab.Len(), tab.FromHdr(), len(nonEmpty))
	}
	var m machine
	mismatches := 0
	for _, w := range nonEmpty {
		f := tab.lookup(w.begin)
		if f == nil || f.pcBegin != w.begin || f.pcEnd != w.end {
			t.Errorf("FDE %#x..%#x: lookup gives %+v", w.begin, w.end, f)
			continue
		}
		for _, r := range w.rows {
			if err := m.rowAt(tab, f, r.loc); err != nil {
				t.Errorf("FDE %#x row %#x: %v", w.begin, r.loc, err)
				continue
			}
			got := []string{renderCFA(m.row.cfa)}
			exp := []string{r.cfa}
			for i, col := range w.cols {
				n := -1
				for k := 0; k < AMD64.NumRegs; k++ {
					if readelfRegName(k) == col {
						n = k
					}
				}
				if n < 0 {
					continue // a vector register the unwinder does not track
				}
				got = append(got, render(tab, m.row.regs[n], col))
				exp = append(exp, r.vals[i])
			}
			if strings.Join(got, " ") != strings.Join(exp, " ") {
				mismatches++
				if mismatches < 10 {
					t.Errorf("FDE %#x..%#x at %#x: rules %v, readelf %v (columns %v)", w.begin, w.end, r.loc, got, exp, w.cols)
				}
			}
		}
	}
}

// TestAbsptrCFI re-encodes every FDE of a real object the way the patch
// build emits .hotpatch.eh_frame (docs/augmented-assembly.md §6: "zR"
// CIEs with absolute 8-byte pointers, at the region's run-time address),
// parses the result as raw bytes at an address, and checks that every
// code address gets the same rules as in the original.
func TestAbsptrCFI(t *testing.T) {
	orig, _ := openTable(t, buildStacks(t, stackVariants["O2"]), true)
	const region = 0x7f1234560000
	data, delta := reencodeAbsptr(orig, region)
	patch, err := NewTable(AMD64, "patch region", Section{Addr: region, Data: data}, Section{})
	if err != nil {
		t.Fatal(err)
	}
	if patch.Len() != orig.Len() {
		t.Fatalf("%d FDEs after re-encoding, %d before", patch.Len(), orig.Len())
	}
	var m1, m2 machine
	for i := range orig.fdes {
		of := &orig.fdes[i]
		nf := patch.lookup(of.pcBegin + delta)
		if nf == nil || nf.pcEnd != of.pcEnd+delta {
			t.Fatalf("FDE %#x: no re-encoded FDE at %#x", of.pcBegin, of.pcBegin+delta)
		}
		for pc := of.pcBegin; pc < of.pcEnd; pc++ {
			if err := m1.rowAt(orig, of, pc); err != nil {
				t.Fatal(err)
			}
			if err := m2.rowAt(patch, nf, pc+delta); err != nil {
				t.Fatal(err)
			}
			if a, b := rowText(orig, &m1.row), rowText(patch, &m2.row); a != b {
				t.Fatalf("pc %#x: original %s, re-encoded %s", pc, a, b)
			}
		}
	}
}

func rowText(t *Table, r *row) string {
	s := renderCFA(r.cfa)
	if r.cfa.isExpr {
		s += fmt.Sprintf("%x", t.data[r.cfa.exprStart:r.cfa.exprEnd])
	}
	for n := 0; n < AMD64.NumRegs; n++ {
		s += " " + render(t, r.regs[n], "")
		if k := r.regs[n].kind; k == ruleExpression || k == ruleValExpression {
			s += fmt.Sprintf("%x", t.data[r.regs[n].exprStart:r.regs[n].exprEnd])
		}
	}
	return s
}

// reencodeAbsptr writes t's FDEs as the patch build does, moved so that
// the code starts at base+0x10000. It returns the bytes and how far the
// code moved.
func reencodeAbsptr(t *Table, base uint64) ([]byte, uint64) {
	lo, _ := t.Bounds()
	delta := base + 0x10000 - lo
	var out []byte
	le := binary.LittleEndian
	for i := range t.fdes {
		f := &t.fdes[i]
		c := &t.cies[f.cie]
		aug := "zR"
		if c.signal {
			aug = "zRS"
		}
		cieStart := len(out)
		var body []byte
		body = le.AppendUint32(body, 0) // CIE id
		body = append(body, 1)          // version
		body = append(body, aug...)
		body = append(body, 0)
		body = appendULEB(body, c.codeAlign)
		body = appendSLEB(body, c.dataAlign)
		body = append(body, byte(c.ra))
		body = append(body, 1, cfi.PEAbsptr) // augmentation data: R
		body = append(body, t.data[c.instrStart:c.instrEnd]...)
		out = le.AppendUint32(out, uint32(len(body)))
		out = append(out, body...)

		fdeStart := len(out)
		body = body[:0]
		body = le.AppendUint32(body, uint32(fdeStart+4-cieStart))
		body = le.AppendUint64(body, f.pcBegin+delta)
		body = le.AppendUint64(body, f.pcEnd-f.pcBegin)
		body = append(body, 0) // no augmentation data
		body = append(body, t.data[f.instrStart:f.instrEnd]...)
		out = le.AppendUint32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return le.AppendUint32(out, 0), delta
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// TestPLTExpression unwinds from inside a real PLT entry, whose CFA rule
// is an expression over the program counter: 8 bytes above the stack
// pointer before the entry pushes its relocation index, 16 after.
func TestPLTExpression(t *testing.T) {
	path := buildStacks(t, append([]string{"-Wl,-z,lazy"}, stackVariants["O2"]...))
	tab, o := openTable(t, path, true)
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plt := f.Section(".plt")
	if plt == nil || plt.Size < 48 {
		t.Fatalf("%s has no lazy PLT", path)
	}
	_ = o
	space := NewAddressSpace(AMD64)
	const bias = 0x555500000000
	if err := space.Add(tab, bias); err != nil {
		t.Fatal(err)
	}
	// Each 16-byte entry after PLT0 is: jmp *slot (6 bytes), push index
	// (5 bytes), jmp PLT0. The stack holds the caller's return address.
	entry := plt.Addr + 16
	const sp = 0x7ffe00001000
	const ret = 0x5555000011aa
	for _, c := range []struct {
		off    uint64
		pushed bool
	}{{0, false}, {6, false}, {11, true}} {
		mem := &Snapshot{Addr: sp - 8, Data: make([]byte, 32)}
		binary.LittleEndian.PutUint64(mem.Data[8:], ret) // return address at sp (before the push)
		var regs Regs
		regs.Set(AMD64.PC, bias+entry+c.off)
		regs.Set(AMD64.SP, sp)
		if c.pushed {
			regs.Set(AMD64.SP, sp-8)
		}
		frames, err := space.Unwind(&regs, mem, make([]Frame, 0, 2))
		if len(frames) < 2 {
			t.Fatalf("PLT entry +%d: %d frames (%v)", c.off, len(frames), err)
		}
		if frames[0].CFA != sp+8 || frames[1].PC != ret || frames[1].SP != sp+8 {
			t.Errorf("PLT entry +%d: CFA %#x, caller pc %#x sp %#x; want CFA %#x pc %#x", c.off, frames[0].CFA, frames[1].PC, frames[1].SP, uint64(sp+8), uint64(ret))
		}
	}
}

func TestTableErrors(t *testing.T) {
	orig, _ := openTable(t, buildStacks(t, stackVariants["O2"]), true)
	data := append([]byte(nil), orig.data...)
	// A record length that runs past the end.
	binary.LittleEndian.PutUint32(data[0:], uint32(len(data)+100))
	_, err := NewTable(AMD64, "broken", Section{Addr: orig.addr, Data: data}, Section{})
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Offset != 0 || !strings.Contains(err.Error(), "broken") {
		t.Errorf("length past the end: %v", err)
	}
	// An FDE whose CIE pointer leads nowhere.
	data = append([]byte(nil), orig.data...)
	fdeOff := int(orig.fdes[0].offset)
	binary.LittleEndian.PutUint32(data[fdeOff+4:], uint32(fdeOff+1000))
	if _, err := NewTable(AMD64, "broken", Section{Addr: orig.addr, Data: data}, Section{}); !errors.As(err, &fe) {
		t.Errorf("bad CIE pointer: %v", err)
	}
	// A header that does not match is ignored in favour of the frames.
	hdr := Section{Addr: orig.addr - 0x1000, Data: []byte{1, 0x1b, 0x03, 0x3b, 0, 0, 0, 0, 0, 0, 0, 0}}
	tab, err := NewTable(AMD64, "hdr", Section{Addr: orig.addr, Data: orig.data}, hdr)
	if err != nil || tab.FromHdr() || tab.Len() != orig.Len() {
		t.Errorf("mismatched header: %v, from hdr %v, %d FDEs", err, tab != nil && tab.FromHdr(), tab.Len())
	}
	// An empty section is an empty table.
	if tab, err := NewTable(AMD64, "empty", Section{}, Section{}); err != nil || tab.Len() != 0 {
		t.Errorf("empty: %v", err)
	}
}
