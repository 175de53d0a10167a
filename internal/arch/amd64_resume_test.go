package arch

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestAMD64ResumeCode decodes the resume code and follows each
// rip-relative load to the block slot it must read: tgkill's thread id,
// the stack pointer below the red zone, the flags, each register by its
// hardware number, the stack pointer, and the jump through rip.
func TestAMD64ResumeCode(t *testing.T) {
	const at, block = 0x7f0000001100, 0x7f0000001000
	rc, ok := AMD64.EncodeResume(at, block, 4242)
	if !ok {
		t.Fatal("no resume code")
	}
	type load struct {
		op   string
		slot int
	}
	var loads []load
	var ops []string
	marker := -1
	for off := 0; off < len(rc.Code); {
		inst, err := x86asm.Decode(rc.Code[off:], 64)
		if err != nil {
			t.Fatalf("undecodable at %d: % x", off, rc.Code[off:])
		}
		next := at + uint64(off+inst.Len)
		for _, a := range inst.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
				slot := (int64(next) + m.Disp - block) / 8
				loads = append(loads, load{fmt.Sprintf("%v %v", inst.Op, inst.Args[0]), int(slot)})
			}
		}
		ops = append(ops, inst.Op.String())
		off += inst.Len
		if inst.Op == x86asm.SYSCALL {
			marker = off
		}
	}
	if marker != rc.Marker {
		t.Fatalf("marker at %d, the syscall ends at %d", rc.Marker, marker)
	}
	want := []load{{"MOV RSI", 19}, {"MOV RDX", 20}, {"MOV RSP", 18}, {"PUSH", 17},
		{"MOV RAX", 0}, {"MOV RCX", 1}, {"MOV RDX", 2}, {"MOV RBX", 3}, {"MOV RBP", 5}, {"MOV RSI", 6}, {"MOV RDI", 7},
		{"MOV R8", 8}, {"MOV R9", 9}, {"MOV R10", 10}, {"MOV R11", 11}, {"MOV R12", 12}, {"MOV R13", 13}, {"MOV R14", 14}, {"MOV R15", 15},
		{"MOV RSP", 4}, {"JMP", 16}}
	if len(loads) != len(want) {
		t.Fatalf("%d rip-relative operands, want %d: %v", len(loads), len(want), loads)
	}
	for i, w := range want {
		if loads[i].slot != w.slot || loads[i].op[:len(w.op)] != w.op {
			t.Errorf("operand %d: %v, want %v", i, loads[i], w)
		}
	}
	if ops[len(ops)-1] != "JMP" {
		t.Errorf("the code ends in %s, want the jump back", ops[len(ops)-1])
	}
}

func TestAMD64ResumeBlock(t *testing.T) {
	var st ResumeState
	for i := range st.Regs {
		st.Regs[i] = uint64(0x100 + i) // by DWARF number
	}
	st.Regs[7] = 0x7ffc00001000 // rsp
	st.PC, st.Flags = 0x401000, 0x246|0x100|0x10000
	b := AMD64.EncodeResumeBlock(st, 77, 23)
	if len(b) != ResumeBlockSize {
		t.Fatalf("block of %d bytes", len(b))
	}
	word := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8*i:]) }
	// rdx is DWARF 1, hardware 2; rsi DWARF 4, hardware 6.
	if word(2) != 0x101 || word(6) != 0x104 || word(4) != 0x7ffc00001000 || word(16) != 0x401000 {
		t.Errorf("registers misplaced: rdx %#x rsi %#x rsp %#x rip %#x", word(2), word(6), word(4), word(16))
	}
	if word(17) != 0x246 {
		t.Errorf("flags %#x: the trap and resume flags must be cleared", word(17))
	}
	if sp := word(18); sp > 0x7ffc00001000-128-8 || sp%16 != 0 {
		t.Errorf("temporary stack %#x is not below the red zone, aligned", sp)
	}
	if word(19) != 77 || word(20) != 23 {
		t.Errorf("thread id %d, signal %d", word(19), word(20))
	}
}
