package arch

import (
	"debug/elf"
	"encoding/binary"

	"golang.org/x/arch/x86/x86asm"
)

// AMD64 is the x86-64 table.
var AMD64 = &Arch{
	Name:      "amd64",
	Machine:   elf.EM_X86_64,
	PtrSize:   8,
	JumpSize:  5,
	JumpReach: 1<<31 - 1,
	encodeJump: func(from, to uint64) []byte {
		// jmp rel32, relative to the end of the instruction.
		b := []byte{0xe9, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[1:], uint32(int32(int64(to-(from+5)))))
		return b
	},
	FarJumpSize: 14,
	encodeFar: func(to uint64) []byte {
		// jmp *0(%rip) followed by the absolute target: no register is
		// clobbered, which matters because the stub stands in for a call
		// whose argument registers are live.
		b := []byte{0xff, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.LittleEndian.PutUint64(b[6:], to)
		return b
	},
	Trap:        []byte{0xcc},
	SyscallInsn: []byte{0x0f, 0x05},
	Sys:         Syscalls{Mmap: 9, Mprotect: 10, Munmap: 11, Prctl: 157, Getpid: 39},
	Relocs: map[uint32]RelocType{
		uint32(elf.R_X86_64_64):       {Name: "R_X86_64_64", Class: ClassAddress, Size: 8},
		uint32(elf.R_X86_64_PC32):     {Name: "R_X86_64_PC32", Class: ClassAddress, Size: 4, PCRel: true, Overflow: OverflowSigned},
		uint32(elf.R_X86_64_PLT32):    {Name: "R_X86_64_PLT32", Class: ClassAddress, Size: 4, PCRel: true, Overflow: OverflowSigned, IsCall: true},
		uint32(elf.R_X86_64_32):       {Name: "R_X86_64_32", Class: ClassAddress, Size: 4, Overflow: OverflowUnsigned},
		uint32(elf.R_X86_64_32S):      {Name: "R_X86_64_32S", Class: ClassAddress, Size: 4, Overflow: OverflowSigned},
		uint32(elf.R_X86_64_PC64):     {Name: "R_X86_64_PC64", Class: ClassAddress, Size: 8, PCRel: true},
		uint32(elf.R_X86_64_TPOFF32):  {Name: "R_X86_64_TPOFF32", Class: ClassTPOff, Size: 4, Overflow: OverflowSigned},
		uint32(elf.R_X86_64_TPOFF64):  {Name: "R_X86_64_TPOFF64", Class: ClassTPOff, Size: 8},
		uint32(elf.R_X86_64_DTPMOD64): {Name: "R_X86_64_DTPMOD64", Class: ClassDTPMod, Size: 8},
		uint32(elf.R_X86_64_DTPOFF64): {Name: "R_X86_64_DTPOFF64", Class: ClassDTPOff, Size: 8},
		uint32(elf.R_X86_64_DTPOFF32): {Name: "R_X86_64_DTPOFF32", Class: ClassDTPOff, Size: 4, Overflow: OverflowSigned},
	},
	// DWARF numbering from the System V x86-64 psABI, figure 3.36.
	DWARFRegs: []string{
		0: "rax", 1: "rdx", 2: "rcx", 3: "rbx", 4: "rsi", 5: "rdi", 6: "rbp", 7: "rsp",
		8: "r8", 9: "r9", 10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15",
		16: "rip",
	},
	PaddingLen: func(b []byte) int {
		n := 0
		for n < len(b) {
			inst, err := x86asm.Decode(b[n:], 64)
			if err != nil || !(inst.Op == x86asm.NOP || inst.Op == x86asm.INT && inst.Len == 1) {
				break
			}
			n += inst.Len
		}
		return n
	},
	CallBefore: func(code []byte) bool {
		// call rel32 is 5 bytes; indirect calls through a register or
		// memory are 2 to 7 bytes with prefixes and displacements.
		for k := 2; k <= 7 && k <= len(code); k++ {
			inst, err := x86asm.Decode(code[len(code)-k:], 64)
			if err == nil && inst.Op == x86asm.CALL && inst.Len == k {
				return true
			}
		}
		return false
	},
	BranchesTo: func(code []byte, addr, target uint64) bool {
		for off := 0; off < len(code); {
			inst, err := x86asm.Decode(code[off:], 64)
			if err != nil || inst.Op == 0 {
				// x86asm reports a truncated instruction as Op 0.
				return true
			}
			off += inst.Len
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op != x86asm.CALL {
				if addr+uint64(off)+uint64(int64(rel)) == target {
					return true
				}
			}
		}
		return false
	},
	EncodeSyscalls: func(calls []SyscallCall) SyscallCode {
		// movabs $imm64 into rdi, rsi, rdx, r10, r8, r9: the system call
		// argument registers in order.
		argOps := [][2]byte{{0x48, 0xbf}, {0x48, 0xbe}, {0x48, 0xba}, {0x49, 0xba}, {0x49, 0xb8}, {0x49, 0xb9}}
		var sc SyscallCode
		for _, c := range calls {
			sc.Code = append(sc.Code, 0xb8) // mov $nr, %eax
			sc.Code = binary.LittleEndian.AppendUint32(sc.Code, uint32(c.Nr))
			for i, a := range c.Args {
				sc.Code = append(sc.Code, argOps[i][0], argOps[i][1])
				sc.Code = binary.LittleEndian.AppendUint64(sc.Code, a)
			}
			sc.Code = append(sc.Code, 0x0f, 0x05) // syscall
			switch c.Success {
			case SuccessAlways:
				sc.Failed = append(sc.Failed, -1)
				continue
			case SuccessArg0:
				// The kernel preserves rdi across the call.
				sc.Code = append(sc.Code, 0x48, 0x39, 0xf8) // cmp %rdi,%rax
			default:
				sc.Code = append(sc.Code, 0x48, 0x85, 0xc0) // test %rax,%rax
			}
			sc.Code = append(sc.Code, 0x74, 0x01, 0xcc) // je +1; int3
			sc.Failed = append(sc.Failed, len(sc.Code))
		}
		sc.Trap = len(sc.Code)
		sc.Code = append(sc.Code, 0xcc) // int3
		sc.Done = len(sc.Code)
		return sc
	},
	EncodeCopy: func(dst, src, n uint64) []byte {
		code := []byte{0x48, 0xbf} // movabs $dst, %rdi
		code = binary.LittleEndian.AppendUint64(code, dst)
		code = append(code, 0x48, 0xbe) // movabs $src, %rsi
		code = binary.LittleEndian.AppendUint64(code, src)
		code = append(code, 0x48, 0xb9) // movabs $n, %rcx
		code = binary.LittleEndian.AppendUint64(code, n)
		// cld; rep movsb: the thread may have been stopped with the
		// direction flag set.
		return append(code, 0xfc, 0xf3, 0xa4)
	},
	EncodeCall: func(fn uint64, args []uint64) []byte {
		// lea -384(%rsp),%rsp; and $-16,%rsp: below the red zone, and
		// 16-aligned at the call as the psABI requires.
		code := []byte{0x48, 0x8d, 0xa4, 0x24, 0x80, 0xfe, 0xff, 0xff, 0x48, 0x83, 0xe4, 0xf0}
		// movabs into rdi, rsi, rdx, rcx, r8, r9.
		argOps := [][2]byte{{0x48, 0xbf}, {0x48, 0xbe}, {0x48, 0xba}, {0x48, 0xb9}, {0x49, 0xb8}, {0x49, 0xb9}}
		for i, a := range args {
			code = append(code, argOps[i][0], argOps[i][1])
			code = binary.LittleEndian.AppendUint64(code, a)
		}
		code = append(code, 0x48, 0xb8) // movabs $fn, %rax
		code = binary.LittleEndian.AppendUint64(code, fn)
		return append(code, 0xff, 0xd0) // call *%rax
	},
	EncodeReturnHook: func(ret uint64) ReturnHook {
		code := []byte{
			0x90,       // nop: a return address minus one still lands in the hook
			0x50,       // push %rax: the returned value
			0x51,       // push %rcx: syscall clobbers rcx and r11
			0x41, 0x53, // push %r11
			0xb8, 39, 0, 0, 0, // mov $39 (getpid), %eax
			0x0f, 0x05, // syscall
			0x41, 0x5b, // pop %r11
			0x59,                   // pop %rcx
			0x58,                   // pop %rax
			0xff, 0x25, 0, 0, 0, 0, // jmp *0(%rip): the word that follows
		}
		code = binary.LittleEndian.AppendUint64(code, ret)
		// From the stack pointer up at the stop: r11, rcx, rax.
		return ReturnHook{Code: code, Entry: 1, Stop: 12, Nr: 39, Saved: []int{11, 2, 0}, SavedSize: 24}
	},
	ReturnSlot: -8,
	Returns: func(code []byte) bool {
		for off := 0; off < len(code); {
			inst, err := x86asm.Decode(code[off:], 64)
			if err != nil || inst.Op == 0 {
				return true
			}
			switch inst.Op {
			case x86asm.RET, x86asm.LRET, x86asm.IRET, x86asm.IRETQ:
				return true
			case x86asm.JMP:
				// A tail call leaves the function for good: its callee
				// returns to this function's caller.
				if rel, ok := inst.Args[0].(x86asm.Rel); ok {
					to := int64(off+inst.Len) + int64(rel)
					if to < 0 || to >= int64(len(code)) {
						return true
					}
				} else {
					return true
				}
			}
			off += inst.Len
		}
		return false
	},
	DWARFPC:             16,
	DWARFSP:             7,
	DWARFFP:             6,
	ReturnAddressAdjust: 1,
}
