package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// AMD64 is the x86-64 table. DWARF numbers follow the System V psABI:
// rax rdx rcx rbx rsi rdi rbp rsp r8..r15, then the return address
// column 16, which the unwinder also uses as the program counter.
var AMD64 = &Arch{
	Name:    "x86-64",
	Machine: elf.EM_X86_64,
	PtrSize: 8,
	NumRegs: 17,
	RegNames: []string{"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"},
	PC:          16,
	SP:          7,
	DefaultRA:   16,
	SignalFrame: amd64SignalFrame,
}

// amd64Sigreturn are the signal return trampolines: glibc's __restore_rt
// (mov $15,%rax; syscall) and musl's (mov $15,%eax; syscall). 15 is
// rt_sigreturn.
var amd64Sigreturn = [][]byte{
	{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},
	{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},
}

// The kernel's rt_sigframe on x86-64 (arch/x86/include/asm/sigframe.h) is
// {pretcode, ucontext, siginfo}. The handler's ret pops pretcode, so in
// the trampoline the stack pointer points at the ucontext, whose
// uc_mcontext (after uc_flags, uc_link and the 24-byte uc_stack) holds
// the general registers in the order of <sys/ucontext.h> REG_R8..REG_RIP.
const amd64UcontextMcontext = 40

// amd64GregOfDWARF maps DWARF register n to its index in mcontext gregs.
var amd64GregOfDWARF = [17]int{
	13, 12, 14, 11, 9, 8, 10, 15, // rax rdx rcx rbx rsi rdi rbp rsp
	0, 1, 2, 3, 4, 5, 6, 7, // r8..r15
	16, // rip
}

// amd64SignalFrame handles a trampoline without CFI (glibc gives
// __restore_rt CFI, but a program may install its own sa_restorer, and
// musl's has none).
func amd64SignalFrame(mem Memory, regs Regs) (Regs, bool, error) {
	pc := regs.R[16]
	var code [16]byte
	for i := 0; i < 2; i++ {
		w, err := mem.Word(pc + uint64(8*i))
		if err != nil {
			return regs, false, nil
		}
		binary.LittleEndian.PutUint64(code[8*i:], w)
	}
	match := false
	for _, p := range amd64Sigreturn {
		match = match || bytes.HasPrefix(code[:], p)
	}
	if !match {
		return regs, false, nil
	}
	mcontext := regs.R[7] + amd64UcontextMcontext
	var next Regs
	for n, g := range amd64GregOfDWARF {
		v, err := mem.Word(mcontext + uint64(8*g))
		if err != nil {
			return regs, false, err
		}
		next.Set(n, v)
	}
	return next, true, nil
}
