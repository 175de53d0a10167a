package arch

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestAMD64JumpDecodesToTarget(t *testing.T) {
	cases := []struct{ from, to uint64 }{
		{0x401000, 0x401000 + 0x100},
		{0x7f0000001000, 0x7f0000001000 - 0x7fff0000},
		{0x1000, 0x1005},
		{0x80001000, 0x1000 + 5}, // exactly -2^31 from the end of the jump
	}
	for _, c := range cases {
		b, ok := AMD64.EncodeJump(c.from, c.to)
		if !ok {
			t.Fatalf("jump %#x -> %#x refused", c.from, c.to)
		}
		if len(b) != AMD64.JumpSize {
			t.Fatalf("jump is %d bytes, table says %d", len(b), AMD64.JumpSize)
		}
		inst, err := x86asm.Decode(b, 64)
		if err != nil || inst.Op != x86asm.JMP || inst.Len != len(b) {
			t.Fatalf("jump bytes % x decode as %v (%v)", b, inst, err)
		}
		rel := inst.Args[0].(x86asm.Rel)
		if got := c.from + uint64(inst.Len) + uint64(int64(rel)); got != c.to {
			t.Errorf("jump %#x -> %#x lands at %#x", c.from, c.to, got)
		}
	}
	if _, ok := AMD64.EncodeJump(0x1000, 0x1000+5+1<<31); ok {
		t.Error("a jump 2 GiB forward was accepted")
	}
	if _, ok := AMD64.EncodeJump(0x100000000, 0x100000000+5-1<<31-1); ok {
		t.Error("a jump 2 GiB + 1 backward was accepted")
	}
}

func TestAMD64FarJumpIsIndirectThroughItsOwnSlot(t *testing.T) {
	const to = 0x7f1234567890
	b := AMD64.EncodeFarJump(to)
	if len(b) != AMD64.FarJumpSize {
		t.Fatalf("stub is %d bytes, table says %d", len(b), AMD64.FarJumpSize)
	}
	inst, err := x86asm.Decode(b, 64)
	if err != nil || inst.Op != x86asm.JMP {
		t.Fatalf("stub % x decodes as %v (%v)", b, inst, err)
	}
	mem, ok := inst.Args[0].(x86asm.Mem)
	if !ok || mem.Base != x86asm.RIP || mem.Disp != 0 {
		t.Fatalf("stub operand %v, want 0(%%rip)", inst.Args[0])
	}
	if got := binary.LittleEndian.Uint64(b[inst.Len:]); got != to {
		t.Errorf("stub slot holds %#x, want %#x", got, uint64(to))
	}
}

func TestAMD64TrapAndSyscallDecode(t *testing.T) {
	for _, c := range []struct {
		b  []byte
		op x86asm.Op
	}{{AMD64.Trap, x86asm.INT}, {AMD64.SyscallInsn, x86asm.SYSCALL}} {
		inst, err := x86asm.Decode(c.b, 64)
		if err != nil || inst.Op != c.op || inst.Len != len(c.b) {
			t.Errorf("% x decodes as %v (%v), want %v", c.b, inst, err, c.op)
		}
	}
}

func TestAMD64RelocApply(t *testing.T) {
	cases := []struct {
		typ     elf.R_X86_64
		s       uint64
		a       int64
		p       uint64
		want    uint64
		size    int
		wantErr error
	}{
		{elf.R_X86_64_64, 0x7f0000001000, 8, 0, 0x7f0000001008, 8, nil},
		{elf.R_X86_64_PC32, 0x401000, -4, 0x400ff0, 0xc, 4, nil},
		{elf.R_X86_64_PLT32, 0x400000, -4, 0x401000, uint64(uint32(0xfffff000 - 4)), 4, nil},
		{elf.R_X86_64_PC32, 0x7f0000000000, -4, 0x400000, 0, 4, ErrRelocOverflow},
		{elf.R_X86_64_32, 0xffffffff, 0, 0, 0xffffffff, 4, nil},
		{elf.R_X86_64_32, 0x100000000, 0, 0, 0, 4, ErrRelocOverflow},
		{elf.R_X86_64_32S, 0x80000000, 0, 0, 0, 4, ErrRelocOverflow},
		{elf.R_X86_64_32S, 0x7fffffff, 0, 0, 0x7fffffff, 4, nil},
		{elf.R_X86_64_PC64, 0x1000, 0, 0x2000, uint64(0xfffffffffffff000), 8, nil},
		{elf.R_X86_64_TPOFF32, uint64(0xfffffffffffffffc), 0, 0, 0xfffffffc, 4, nil},
		{elf.R_X86_64_DTPMOD64, 1, 0, 0, 1, 8, nil},
	}
	for _, c := range cases {
		r, err := AMD64.Reloc(uint32(c.typ))
		if err != nil {
			t.Fatal(err)
		}
		field := make([]byte, r.Size)
		err = r.Apply(field, c.s, c.a, c.p)
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%v: error %v, want %v", c.typ, err, c.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		var got uint64
		if c.size == 8 {
			got = binary.LittleEndian.Uint64(field)
		} else {
			got = uint64(binary.LittleEndian.Uint32(field))
		}
		if got != c.want {
			t.Errorf("%v: S=%#x A=%d P=%#x gives %#x, want %#x", c.typ, c.s, c.a, c.p, got, c.want)
		}
	}
	if _, err := AMD64.Reloc(uint32(elf.R_X86_64_GOTPCREL)); !errors.Is(err, ErrUnknownReloc) {
		t.Errorf("GOTPCREL: %v, want ErrUnknownReloc", err)
	} else if want := "R_X86_64_GOTPCREL"; !contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}

func TestForMachine(t *testing.T) {
	if a, err := ForMachine(elf.EM_X86_64); err != nil || a != AMD64 {
		t.Fatalf("x86-64: %v %v", a, err)
	}
	if _, err := ForMachine(elf.EM_MIPS); err == nil {
		t.Fatal("MIPS accepted")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestAMD64PaddingLen(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{[]byte{0xcc, 0xcc, 0xcc, 0xcc, 0xcc}, 5},
		{[]byte{0x90, 0x0f, 0x1f, 0x40, 0x00, 0x55}, 5},                          // nop; nopl 0(%rax); push %rbp
		{[]byte{0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00}, 10}, // cs nopw
		{[]byte{0x55, 0x90}, 0},
		{[]byte{0x0f}, 0},
	} {
		if got := AMD64.PaddingLen(c.b); got != c.want {
			t.Errorf("PaddingLen(% x) = %d, want %d", c.b, got, c.want)
		}
	}
}

func TestAMD64CallBefore(t *testing.T) {
	for _, c := range []struct {
		code []byte
		want bool
	}{
		{[]byte{0x90, 0x90, 0xe8, 1, 2, 3, 4}, true},              // call rel32
		{[]byte{0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xd0}, true},  // call *%rax
		{[]byte{0x90, 0xff, 0x15, 0x10, 0x20, 0x00, 0x00}, true},  // call *0x2010(%rip)
		{[]byte{0x90, 0x90, 0x90, 0x90, 0x90, 0x48, 0x89}, false}, // middle of a mov
		{[]byte{0x55, 0x48, 0x89, 0xe5, 0x31, 0xc0, 0xc3}, false}, // push; mov; xor; ret
	} {
		if got := AMD64.CallBefore(c.code); got != c.want {
			t.Errorf("CallBefore(% x) = %v, want %v", c.code, got, c.want)
		}
	}
}

func TestAMD64BranchesTo(t *testing.T) {
	// spin: mov (%rdi),%eax; test %eax,%eax; je spin; ret
	loop := []byte{0x8b, 0x07, 0x85, 0xc0, 0x74, 0xfa, 0xc3}
	if !AMD64.BranchesTo(loop, 0x1000, 0x1000) {
		t.Error("a loop back to the entry was not seen")
	}
	// lea 1(%rdi),%eax; ret, and a call to the entry (recursion) is not
	// a branch into the middle of a loop.
	plain := []byte{0x8d, 0x47, 0x01, 0xe8, 0xf8, 0xff, 0xff, 0xff, 0xc3}
	if AMD64.BranchesTo(plain, 0x1000, 0x1000) {
		t.Error("straight-line code reported as branching to its entry")
	}
	if !AMD64.BranchesTo([]byte{0x90, 0x0f}, 0x1000, 0x1000) || !AMD64.BranchesTo([]byte{0xd6}, 0x1000, 0x1000) {
		t.Error("undecodable code must count as branching")
	}
}

func TestAMD64EncodeSyscalls(t *testing.T) {
	sc := AMD64.EncodeSyscalls([]SyscallCall{
		{Nr: 9, Args: []uint64{0x7f0000000000, 0x3000, 5, 0x100022, ^uint64(0), 0}, Success: SuccessArg0},
		{Nr: 10, Args: []uint64{0x7f0000000000, 0x1000, 1}},
		{Nr: 157, Args: []uint64{1, 2, 3, 4, 5}, Success: SuccessAlways},
	})
	code := sc.Code
	var ops []string
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("undecodable at %d: % x", off, code[off:])
		}
		ops = append(ops, inst.String())
		off += inst.Len
	}
	want := []string{
		"MOV EAX, 0x9", "MOV RDI, 0x7f0000000000", "MOV RSI, 0x3000", "MOV RDX, 0x5", "MOV R10, 0x100022", "MOV R8, -0x1", "MOV R9, 0x0", "SYSCALL",
		"CMP RAX, RDI", "JE .+1", "INT 0x3",
		"MOV EAX, 0xa", "MOV RDI, 0x7f0000000000", "MOV RSI, 0x1000", "MOV RDX, 0x1", "SYSCALL",
		"TEST RAX, RAX", "JE .+1", "INT 0x3",
		"MOV EAX, 0x9d", "MOV RDI, 0x1", "MOV RSI, 0x2", "MOV RDX, 0x3", "MOV R10, 0x4", "MOV R8, 0x5", "SYSCALL",
		"INT 0x3",
	}
	if strings.Join(ops, "; ") != strings.Join(want, "; ") {
		t.Fatalf("sequence decodes as\n%s\nwant\n%s", strings.Join(ops, "; "), strings.Join(want, "; "))
	}
	// Each checked call's failure traps at its own int3, the unchecked
	// one has none, and success stops past the final int3.
	if len(sc.Failed) != 3 || sc.Failed[2] != -1 || sc.Done != len(code) || sc.Trap != len(code)-1 || code[sc.Trap] != 0xcc {
		t.Fatalf("failed %v, done %d, trap %d, in %d bytes", sc.Failed, sc.Done, sc.Trap, len(code))
	}
	for i := 0; i < 2; i++ {
		if code[sc.Failed[i]-1] != 0xcc || sc.FailedCall(sc.Failed[i]) != i {
			t.Errorf("call %d: failure stop %d does not follow an int3 or is not found", i, sc.Failed[i])
		}
	}
	if sc.FailedCall(sc.Done) != -1 || sc.FailedCall(-1) != -1 {
		t.Error("the success stop, or an unchecked call, reported as a failure")
	}
}

func decodeAll(t *testing.T, code []byte) string {
	t.Helper()
	var ops []string
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("undecodable at %d: % x", off, code[off:])
		}
		ops = append(ops, inst.String())
		off += inst.Len
	}
	return strings.Join(ops, "; ")
}

func TestAMD64EncodeCopyAndCall(t *testing.T) {
	got := decodeAll(t, AMD64.EncodeCopy(0x7f0000001000, 0x55550000, 0x48))
	want := "MOV RDI, 0x7f0000001000; MOV RSI, 0x55550000; MOV RCX, 0x48; CLD; REP MOVSB [RDI], [RSI]"
	if got != want {
		t.Errorf("copy decodes as\n%s\nwant\n%s", got, want)
	}
	got = decodeAll(t, AMD64.EncodeCall(0x7f0000002000, []uint64{1, 2, 3, 4, 5, 6}))
	// x86asm shows the absent index register of the SIB byte as Reg(0):
	// objdump reads lea -0x180(%rsp),%rsp.
	want = "LEA RSP, [RSP+Reg(0)-0x180]; AND RSP, -0x10; MOV RDI, 0x1; MOV RSI, 0x2; MOV RDX, 0x3; MOV RCX, 0x4; MOV R8, 0x5; MOV R9, 0x6; MOV RAX, 0x7f0000002000; CALL RAX"
	if got != want {
		t.Errorf("call decodes as\n%s\nwant\n%s", got, want)
	}
}
