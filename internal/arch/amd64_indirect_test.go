package arch

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// assembled is one instruction as GNU as encodes it, with the offset of
// its relocated field.
type assembled struct {
	src   string
	insn  []byte
	field int
}

// assemble runs the real assembler over one instruction per line, each
// referring to the undefined symbol far, and returns each with the
// offset of its relocation.
func assemble(t *testing.T, lines []string) []assembled {
	t.Helper()
	testutil.RequireTools(t, "as")
	dir := t.TempDir()
	src := filepath.Join(dir, "x.s")
	if err := os.WriteFile(src, []byte(".text\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "x.o")
	if out, err := exec.Command("as", "--64", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s", err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text, err := f.Section(".text").Data()
	if err != nil {
		t.Fatal(err)
	}
	rela, err := f.Section(".rela.text").Data()
	if err != nil {
		t.Fatal(err)
	}
	var fields []int
	for i := 0; i+24 <= len(rela); i += 24 {
		fields = append(fields, int(binary.LittleEndian.Uint64(rela[i:])))
	}
	var out []assembled
	for pos, k := 0, 0; pos < len(text); k++ {
		n, err := AMD64.InsnLen(text[pos:])
		if err != nil {
			t.Fatal(err)
		}
		if k >= len(lines) || k >= len(fields) || fields[k] < pos || fields[k] >= pos+n {
			t.Fatalf("instruction %d (% x) does not hold relocation %d", k, text[pos:pos+n], k)
		}
		out = append(out, assembled{src: lines[k], insn: text[pos : pos+n], field: fields[k] - pos})
		pos += n
	}
	return out
}

// place lays a rewrite out: the site at site, the thunk at thunk, the
// slot at slot, and fills the fields.
func place(t *testing.T, ind Indirect, site, thunk, slot uint64, insnLen int) {
	t.Helper()
	if len(ind.Site) != insnLen {
		t.Fatalf("site is %d bytes, the instruction %d", len(ind.Site), insnLen)
	}
	for _, f := range ind.Fields {
		buf, at := ind.Site, site
		if f.InThunk {
			buf, at = ind.Thunk, thunk
		}
		to := map[IndirectTarget]uint64{ToSlot: slot, ToThunk: thunk, ToBack: site + uint64(insnLen)}[f.To]
		v := int64(to) + f.Addend - int64(at+uint64(f.Off))
		binary.LittleEndian.PutUint32(buf[f.Off:], uint32(int32(v)))
	}
}

// decodeInsns decodes code loaded at addr.
func decodeInsns(t *testing.T, code []byte) []x86asm.Inst {
	t.Helper()
	var out []x86asm.Inst
	for pos := 0; pos < len(code); {
		inst, err := x86asm.Decode(code[pos:], 64)
		if err != nil {
			t.Fatalf("decode % x at %d: %v", code, pos, err)
		}
		out = append(out, inst)
		pos += inst.Len
	}
	return out
}

func ripTarget(t *testing.T, inst x86asm.Inst, at uint64) uint64 {
	t.Helper()
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			return at + uint64(inst.Len) + uint64(m.Disp)
		}
	}
	t.Fatalf("%v has no RIP-relative operand", inst)
	return 0
}

func TestAMD64IndirectMovesRIPRelativeInstructionsToThunks(t *testing.T) {
	lines := []string{
		"movq far(%rip), %rax",
		"movl far(%rip), %r11d",
		"movl $8, far(%rip)",
		"addl $2, far(%rip)",
		"cmpb $0, far+3(%rip)",
		"movzbl far(%rip), %ecx",
		"movss far(%rip), %xmm1",
		"incq far(%rip)",
		"movq %r11, far(%rip)",
		"lock addq %r10, far(%rip)",
	}
	const site, thunk, slot = 0x401000, 0x402000, 0x403000
	for _, a := range assemble(t, lines) {
		orig, err := x86asm.Decode(a.insn, 64)
		if err != nil {
			t.Fatal(err)
		}
		ind, err := AMD64.Indirect(a.insn, a.field)
		if err != nil {
			t.Fatalf("%s: %v", a.src, err)
		}
		place(t, ind, site, thunk, slot, len(a.insn))
		s := decodeInsns(t, ind.Site)
		if s[0].Op != x86asm.JMP || site+5+uint64(int64(s[0].Args[0].(x86asm.Rel))) != thunk {
			t.Fatalf("%s: site %v does not jump to the thunk", a.src, s)
		}
		th := decodeInsns(t, ind.Thunk)
		if len(th) != 7 {
			t.Fatalf("%s: thunk %v, want 7 instructions", a.src, th)
		}
		scratch, ok := th[1].Args[0].(x86asm.Reg)
		if !bytes.Equal(ind.Thunk[:len(amd64SkipRedZone)], amd64SkipRedZone) || th[1].Op != x86asm.PUSH || !ok {
			t.Fatalf("%s: thunk starts %v; %v", a.src, th[0], th[1])
		}
		var at uint64 = thunk
		for _, in := range th[:2] {
			at += uint64(in.Len)
		}
		if th[2].Op != x86asm.MOV || th[2].Args[0] != scratch || ripTarget(t, th[2], at) != slot {
			t.Fatalf("%s: %v does not load the slot into %v", a.src, th[2], scratch)
		}
		// The moved instruction is the original with (%scratch) for
		// the symbol; a displacement into the symbol stays in the slot.
		want := strings.Replace(orig.String(), "[RIP]", "["+scratch.String()+"]", 1)
		if th[3].String() != want || th[3].Op != orig.Op || th[3].MemBytes != orig.MemBytes || th[3].DataSize != orig.DataSize {
			t.Errorf("%s: moved as %v (%d-byte operand, %d-bit data), want %v (%d, %d)", a.src, th[3], th[3].MemBytes, th[3].DataSize, want, orig.MemBytes, orig.DataSize)
		}
		if usesReg(orig, func() byte { n, _ := gprNumber(scratch); return n }()) {
			t.Errorf("%s: scratch %v is an operand of the instruction", a.src, scratch)
		}
		end := thunk + uint64(len(ind.Thunk))
		last := th[6]
		if th[4].Op != x86asm.POP || th[4].Args[0] != scratch || !bytes.HasSuffix(ind.Thunk[:len(ind.Thunk)-5], amd64BackRedZone) ||
			last.Op != x86asm.JMP || end+uint64(int64(last.Args[0].(x86asm.Rel))) != site+uint64(len(a.insn)) {
			t.Errorf("%s: thunk ends %v %v %v, want pop, lea and a jump back", a.src, th[4], th[5], last)
		}
	}
}

func TestAMD64IndirectLeaBecomesLoadAndBranchesGoThroughR11(t *testing.T) {
	const site, thunk, slot = 0x401000, 0x402000, 0x403000
	as := assemble(t, []string{"leaq far(%rip), %rdi", "leaq far(%rip), %r12", "call *far(%rip)", "jmp *far(%rip)", "movl $far, %esi", "movq $far, %r9"})

	for _, a := range as[:2] {
		ind, err := AMD64.Indirect(a.insn, a.field)
		if err != nil || ind.Thunk != nil {
			t.Fatalf("%s: %v, thunk % x; want an in-place load", a.src, err, ind.Thunk)
		}
		place(t, ind, site, thunk, slot, len(a.insn))
		in := decodeInsns(t, ind.Site)
		orig, _ := x86asm.Decode(a.insn, 64)
		if len(in) != 1 || in[0].Op != x86asm.MOV || in[0].Args[0] != orig.Args[0] || ripTarget(t, in[0], site) != slot {
			t.Errorf("%s: rewritten as %v", a.src, in)
		}
	}
	for i, a := range as[2:4] {
		ind, err := AMD64.Indirect(a.insn, a.field)
		if err != nil {
			t.Fatalf("%s: %v", a.src, err)
		}
		place(t, ind, site, thunk, slot, len(a.insn))
		s := decodeInsns(t, ind.Site)
		wantOp := []x86asm.Op{x86asm.CALL, x86asm.JMP}[i]
		if s[0].Op != wantOp || site+5+uint64(int64(s[0].Args[0].(x86asm.Rel))) != thunk {
			t.Fatalf("%s: site %v", a.src, s)
		}
		if wantOp == x86asm.CALL {
			// The callee returns right after the 5-byte call: what
			// follows up to the old end must be nops.
			for _, in := range s[1:] {
				if in.Op != x86asm.NOP {
					t.Errorf("%s: %v after the call", a.src, in)
				}
			}
		}
		th := decodeInsns(t, ind.Thunk)
		if len(th) != 3 || ripTarget(t, th[0], thunk) != slot || th[0].Args[0] != x86asm.R11 ||
			th[1].String() != "MOV R11, [R11]" || th[1].DataSize != 64 || th[2].String() != "JMP R11" {
			t.Errorf("%s: thunk %v", a.src, th)
		}
	}
	for _, a := range as[4:] {
		ind, err := AMD64.Indirect(a.insn, a.field)
		if err != nil {
			t.Fatalf("%s: %v", a.src, err)
		}
		place(t, ind, site, thunk, slot, len(a.insn))
		orig, _ := x86asm.Decode(a.insn, 64)
		n, _ := gprNumber(orig.Args[0].(x86asm.Reg))
		th := decodeInsns(t, ind.Thunk)
		if th[0].Op != x86asm.MOV || th[0].Args[0] != x86asm.RAX+x86asm.Reg(n) || ripTarget(t, th[0], thunk) != slot || th[1].Op != x86asm.JMP {
			t.Errorf("%s: thunk %v, want a 64-bit load of the slot into the same register", a.src, th)
		}
	}
}

func TestAMD64IndirectRefusals(t *testing.T) {
	as := assemble(t, []string{"pushq far(%rip)", "movb far(%rip), %ah", "call far", "movq %rsp, far(%rip)"})
	want := []error{ErrNoIndirect, ErrNoIndirect, ErrDirectBranch, ErrNoIndirect}
	for i, a := range as {
		if _, err := AMD64.Indirect(a.insn, a.field); !errors.Is(err, want[i]) {
			t.Errorf("%s: %v, want %v", a.src, err, want[i])
		}
	}
}
