package arch

import (
	"encoding/binary"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestReturnHookAMD64 decodes the hook and checks what the patcher relies
// on: the entry, the stop right after the system call, the registers it
// saves in the order Saved says, and the final jump through the word that
// holds the return address.
func TestReturnHookAMD64(t *testing.T) {
	const ret = 0x7f0011223344
	h := AMD64.EncodeReturnHook(ret)
	if len(h.Code) > ReturnHookSize {
		t.Fatalf("hook is %d bytes, room is %d", len(h.Code), ReturnHookSize)
	}
	if h.Entry < 1 {
		t.Errorf("entry %d: a return address minus one must stay inside the hook", h.Entry)
	}
	var ops []x86asm.Inst
	var offs []int
	for off := h.Entry; off < len(h.Code)-8; {
		inst, err := x86asm.Decode(h.Code[off:], 64)
		if err != nil {
			t.Fatalf("decode at %d: %v", off, err)
		}
		ops = append(ops, inst)
		offs = append(offs, off)
		off += inst.Len
	}
	var pushed []x86asm.Reg
	sawSyscall := false
	for i, inst := range ops {
		switch inst.Op {
		case x86asm.PUSH:
			pushed = append(pushed, inst.Args[0].(x86asm.Reg))
		case x86asm.SYSCALL:
			sawSyscall = true
			if end := offs[i] + inst.Len; end != h.Stop {
				t.Errorf("stop offset %d, the system call ends at %d", h.Stop, end)
			}
		case x86asm.MOV:
			if !sawSyscall && inst.Args[1] != x86asm.Imm(h.Nr) {
				t.Errorf("system call number %v, want %d", inst.Args[1], h.Nr)
			}
		}
	}
	if !sawSyscall || h.Nr != AMD64.Sys.Getpid {
		t.Errorf("the hook must make the getpid call (%d); syscall seen %v, nr %d", AMD64.Sys.Getpid, sawSyscall, h.Nr)
	}
	// Saved lists the registers from the stack pointer up: the reverse of
	// the push order.
	dwarf := map[x86asm.Reg]int{x86asm.RAX: 0, x86asm.RCX: 2, x86asm.R11: 11}
	if len(pushed) != len(h.Saved) || uint64(8*len(pushed)) != h.SavedSize {
		t.Fatalf("pushes %v, Saved %v, SavedSize %d", pushed, h.Saved, h.SavedSize)
	}
	for i, r := range pushed {
		if dwarf[r] != h.Saved[len(pushed)-1-i] {
			t.Errorf("push %d is %v, Saved says DWARF %d", i, r, h.Saved[len(pushed)-1-i])
		}
	}
	last := ops[len(ops)-1]
	if last.Op != x86asm.JMP {
		t.Fatalf("the hook ends with %v, want an indirect jmp", last)
	}
	if got := binary.LittleEndian.Uint64(h.Code[len(h.Code)-8:]); got != ret {
		t.Errorf("the jump's word holds %#x, want %#x", got, uint64(ret))
	}
}

func TestReturnsAMD64(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte
		want bool
	}{
		{"ret", []byte{0x8d, 0x47, 0x01, 0xc3}, true},
		// for (;;) { call f; jmp back }: the shape of an endless main.
		{"endless loop", []byte{0xe8, 0, 0, 0, 0, 0xeb, 0xf9}, false},
		// A tail call leaves the function: its callee returns for it.
		{"tail call", []byte{0x48, 0x89, 0xf8, 0xe9, 0x10, 0, 0, 0}, true},
		{"indirect jump", []byte{0xff, 0xe0}, true},
		{"undecodable", []byte{0x0f}, true},
	} {
		if got := AMD64.Returns(c.code); got != c.want {
			t.Errorf("%s: Returns = %v, want %v", c.name, got, c.want)
		}
	}
}
