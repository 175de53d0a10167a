package asmdiff

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestCFIMatchesAssembler checks the hand-made call frame information of
// patch code against what GNU as makes of the same directives: for every
// patch function, the unwind table decoded from .hotpatch.eh_frame must
// equal, row by row, the one decoded from the .eh_frame of PATCHED.s
// assembled alone.
func TestCFIMatchesAssembler(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range loadCases(t) {
		for _, fs := range asmtest.FlagSets {
			c, fs := c, fs
			t.Run(c.name+"/"+fs.Name, func(t *testing.T) {
				t.Parallel()
				r := runCase(t, c, fs)
				if r.err != nil || len(r.rep.Functions) == 0 {
					t.Skip("skipped: no patch functions at these flags")
				}
				want := frameTables(t, asmtest.Assemble(t, r.patch), ".eh_frame")
				got := frameTables(t, asmtest.Assemble(t, r.out), ".hotpatch.eh_frame")
				if len(got) == 0 {
					t.Fatal("no FDEs in .hotpatch.eh_frame")
				}
				for name, table := range got {
					orig := name
					for _, suffix := range []string{".hotpatch.new", ".hotpatch"} {
						orig = strings.TrimSuffix(orig, suffix)
					}
					w, ok := want[orig]
					if !ok {
						// A changed function keeps its original name
						// in the output; find it by the patched one.
						for n, tab := range want {
							if normName(n) == normName(orig) {
								w, ok = tab, true
							}
						}
					}
					if !ok {
						t.Errorf("FDE for %s: no FDE of the patched file to compare with (have %v)", name, keys(want))
						continue
					}
					if table != w {
						t.Errorf("FDE for %s differs from the assembler's:\n got:\n%s\nwant:\n%s", name, table, w)
					}
				}
			})
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// frameTables decodes the FDEs of an eh_frame-format section of a
// relocatable object into unwind tables, by the name of the function each
// FDE covers (found through the relocation of its pc_begin field).
func frameTables(t *testing.T, objPath, secName string) map[string]string {
	t.Helper()
	f := openELF(t, objPath)
	defer f.Close()
	sec := f.Section(secName)
	if sec == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	// Relocations by offset: the place each points at.
	target := map[uint64]place{}
	if rs := f.Section(".rela" + secName); rs != nil {
		rd, _ := rs.Data()
		for k := 0; k+24 <= len(rd); k += 24 {
			off := binary.LittleEndian.Uint64(rd[k:])
			info := binary.LittleEndian.Uint64(rd[k+8:])
			addend := int64(binary.LittleEndian.Uint64(rd[k+16:]))
			si := int(info >> 32)
			if si == 0 || si-1 >= len(syms) {
				continue
			}
			s := syms[si-1]
			// PC32 (gas's pcrel pc_begin) and 64 (our absolute one)
			// both point at symbol + addend.
			target[off] = place{names: funcsAt(f, syms, s, addend), sec: s.Section, off: uint64(int64(s.Value) + addend)}
		}
	}
	out := map[string]string{}
	cies := map[uint64]*cieInfo{}
	for off := uint64(0); off+4 <= uint64(len(data)); {
		length := uint64(binary.LittleEndian.Uint32(data[off:]))
		if length == 0 {
			break
		}
		start := off + 4
		end := start + length
		if end > uint64(len(data)) {
			t.Fatalf("%s: record at %#x runs past the section", secName, off)
		}
		id := binary.LittleEndian.Uint32(data[start:])
		if id == 0 {
			cies[off] = parseCIE(t, data[start+4:end])
		} else {
			cieOff := start - uint64(id)
			cie := cies[cieOff]
			if cie == nil {
				t.Fatalf("%s: FDE at %#x names unknown CIE at %#x", secName, off, cieOff)
			}
			p := start + 4
			at := target[p]
			ptrSize := uint64(cie.ptrSize)
			var pcRange uint64
			if ptrSize == 8 {
				pcRange = binary.LittleEndian.Uint64(data[p+8:])
			} else {
				pcRange = uint64(binary.LittleEndian.Uint32(data[p+4:]))
			}
			p += 2 * ptrSize
			if cie.aug {
				n, k := uleb128(data[p:])
				p += uint64(k + n)
			}
			code, err := f.Sections[at.sec].Data()
			if err != nil || at.off+pcRange > uint64(len(code)) {
				t.Fatalf("%s: FDE at %#x covers bytes outside its section", secName, off)
			}
			table := cfaTable(t, cie, data[p:end], instructionIndex(t, code[at.off:at.off+pcRange]))
			for _, name := range at.names {
				out[name] = table
			}
		}
		off = end
	}
	return out
}

type place struct {
	names []string
	sec   elf.SectionIndex
	off   uint64
}

// funcsAt names the function symbols at a section offset (aliases share
// one).
func funcsAt(f *elf.File, syms []elf.Symbol, s elf.Symbol, addend int64) []string {
	at := int64(s.Value) + addend
	var names []string
	for _, c := range syms {
		if c.Section == s.Section && int64(c.Value) == at && elf.ST_TYPE(c.Info) == elf.STT_FUNC {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		names = append(names, fmt.Sprintf("%s+%#x", f.Sections[s.Section].Name, at))
	}
	return names
}

// instructionIndex maps the byte offset of every instruction boundary of
// code to the instruction's index. Patch code may encode jumps shorter than
// the original (its hot and cold parts share a section), so unwind rows are
// compared by instruction, not by byte.
func instructionIndex(t *testing.T, code []byte) map[uint64]int {
	idx := map[uint64]int{}
	n := 0
	for off := 0; off < len(code); n++ {
		idx[uint64(off)] = n
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("decode at %#x: %v", off, err)
		}
		off += inst.Len
	}
	idx[uint64(len(code))] = n
	return idx
}

type cieInfo struct {
	codeAlign uint64
	dataAlign int64
	ra        uint64
	aug       bool
	ptrSize   int
	initial   []byte
}

func parseCIE(t *testing.T, b []byte) *cieInfo {
	c := &cieInfo{}
	if b[0] != 1 && b[0] != 3 {
		t.Fatalf("CIE version %d", b[0])
	}
	p := 1
	augEnd := p
	for b[augEnd] != 0 {
		augEnd++
	}
	aug := string(b[p:augEnd])
	p = augEnd + 1
	n, k := uleb128(b[p:])
	c.codeAlign = uint64(n)
	p += k
	sv, k := sleb128(b[p:])
	c.dataAlign = sv
	p += k
	n, k = uleb128(b[p:])
	c.ra = uint64(n)
	p += k
	c.ptrSize = 8
	if strings.HasPrefix(aug, "z") {
		c.aug = true
		n, k = uleb128(b[p:])
		p += k
		augData := b[p : p+n]
		p += n
		// The size of pc_begin follows the R encoding.
		for i, a := 1, 0; i < len(aug); i++ {
			switch aug[i] {
			case 'P':
				enc := augData[a]
				a += 1 + encSize(enc)
			case 'L':
				a++
			case 'R':
				c.ptrSize = encSize(augData[a])
				a++
			}
		}
	}
	c.initial = b[p:]
	return c
}

func encSize(enc byte) int {
	switch enc & 0x0f {
	case 0x00:
		return 8
	case 0x02, 0x0a:
		return 2
	case 0x03, 0x0b:
		return 4
	case 0x04, 0x0c:
		return 8
	}
	return 8
}

func uleb128(b []byte) (int, int) {
	var v uint64
	var shift uint
	for i, c := range b {
		v |= uint64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			return int(v), i + 1
		}
	}
	return int(v), len(b)
}

func sleb128(b []byte) (int64, int) {
	var v int64
	var shift uint
	for i, c := range b {
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if c&0x40 != 0 && shift < 64 {
				v |= -1 << shift
			}
			return v, i + 1
		}
	}
	return v, len(b)
}

type cfaState struct {
	cfaReg uint64
	cfaOff int64
	cfaExp string
	regs   map[uint64]string
}

func (s cfaState) String() string {
	var regs []string
	for r, rule := range s.regs {
		regs = append(regs, fmt.Sprintf("r%d=%s", r, rule))
	}
	sort.Strings(regs)
	cfa := fmt.Sprintf("r%d%+d", s.cfaReg, s.cfaOff)
	if s.cfaExp != "" {
		cfa = s.cfaExp
	}
	return cfa + " " + strings.Join(regs, " ")
}

func (s cfaState) clone() cfaState {
	c := s
	c.regs = map[uint64]string{}
	for k, v := range s.regs {
		c.regs[k] = v
	}
	return c
}

// cfaTable interprets the CIE's initial instructions and an FDE's
// instructions, and renders the unwind table: one line per location where
// the rules change.
func cfaTable(t *testing.T, cie *cieInfo, ins []byte, index map[uint64]int) string {
	st := cfaState{regs: map[uint64]string{}}
	var initial cfaState
	var stack []cfaState
	loc := uint64(0)
	rows := map[uint64]string{}
	var locs []uint64
	record := func() {
		if _, ok := rows[loc]; !ok {
			locs = append(locs, loc)
		}
		rows[loc] = st.String()
	}
	run := func(b []byte, isInitial bool) {
		for p := 0; p < len(b); {
			op := b[p]
			p++
			switch {
			case op&0xc0 == 0x40:
				loc += uint64(op&0x3f) * cie.codeAlign
			case op&0xc0 == 0x80:
				n, k := uleb128(b[p:])
				p += k
				st.regs[uint64(op&0x3f)] = fmt.Sprintf("cfa%+d", int64(n)*cie.dataAlign)
			case op&0xc0 == 0xc0:
				r := uint64(op & 0x3f)
				if rule, ok := initial.regs[r]; ok {
					st.regs[r] = rule
				} else {
					delete(st.regs, r)
				}
			default:
				switch op {
				case 0x00:
				case 0x02:
					loc += uint64(b[p]) * cie.codeAlign
					p++
				case 0x03:
					loc += uint64(binary.LittleEndian.Uint16(b[p:])) * cie.codeAlign
					p += 2
				case 0x04:
					loc += uint64(binary.LittleEndian.Uint32(b[p:])) * cie.codeAlign
					p += 4
				case 0x05:
					r, k := uleb128(b[p:])
					p += k
					n, k := uleb128(b[p:])
					p += k
					st.regs[uint64(r)] = fmt.Sprintf("cfa%+d", int64(n)*cie.dataAlign)
				case 0x06:
					r, k := uleb128(b[p:])
					p += k
					if rule, ok := initial.regs[uint64(r)]; ok {
						st.regs[uint64(r)] = rule
					} else {
						delete(st.regs, uint64(r))
					}
				case 0x07, 0x08:
					r, k := uleb128(b[p:])
					p += k
					st.regs[uint64(r)] = map[byte]string{7: "undef", 8: "same"}[op]
				case 0x09:
					r, k := uleb128(b[p:])
					p += k
					r2, k := uleb128(b[p:])
					p += k
					st.regs[uint64(r)] = fmt.Sprintf("reg%d", r2)
				case 0x0a:
					stack = append(stack, st.clone())
				case 0x0b:
					if len(stack) == 0 {
						t.Fatalf("DW_CFA_restore_state without remember")
					}
					st = stack[len(stack)-1]
					stack = stack[:len(stack)-1]
				case 0x0c:
					r, k := uleb128(b[p:])
					p += k
					n, k := uleb128(b[p:])
					p += k
					st.cfaReg, st.cfaOff, st.cfaExp = uint64(r), int64(n), ""
				case 0x0d:
					r, k := uleb128(b[p:])
					p += k
					st.cfaReg = uint64(r)
				case 0x0e:
					n, k := uleb128(b[p:])
					p += k
					st.cfaOff = int64(n)
				case 0x0f:
					n, k := uleb128(b[p:])
					st.cfaExp = fmt.Sprintf("expr%x", b[p+k:p+k+n])
					p += k + n
				case 0x10, 0x16:
					r, k := uleb128(b[p:])
					p += k
					n, k := uleb128(b[p:])
					st.regs[uint64(r)] = fmt.Sprintf("expr%d:%x", op, b[p+k:p+k+n])
					p += k + n
				case 0x11:
					r, k := uleb128(b[p:])
					p += k
					n, k := sleb128(b[p:])
					p += k
					st.regs[uint64(r)] = fmt.Sprintf("cfa%+d", n*cie.dataAlign)
				case 0x13:
					n, k := sleb128(b[p:])
					p += k
					st.cfaOff = n * cie.dataAlign
				case 0x2e:
					_, k := uleb128(b[p:])
					p += k
				default:
					t.Fatalf("unknown CFA opcode %#x", op)
				}
			}
			if !isInitial {
				record()
			}
		}
	}
	run(cie.initial, true)
	initial = st.clone()
	record()
	run(ins, false)
	// Render the rows where the state changes.
	sort.Slice(locs, func(i, j int) bool { return locs[i] < locs[j] })
	var b strings.Builder
	prev := ""
	for _, l := range locs {
		if rows[l] == prev {
			continue
		}
		prev = rows[l]
		i, ok := index[l]
		if !ok {
			t.Fatalf("unwind row at %#x is not on an instruction boundary", l)
		}
		fmt.Fprintf(&b, "insn %d: %s\n", i, rows[l])
	}
	return b.String()
}
