package ptrace

import "golang.org/x/sys/unix"

// Regs are the general registers of a thread as ptrace reads them.
type Regs struct {
	raw unix.PtraceRegs
}

// PC is the instruction pointer.
func (r *Regs) PC() uint64 { return r.raw.Rip }

// SP is the stack pointer.
func (r *Regs) SP() uint64 { return r.raw.Rsp }

// FP is the frame pointer.
func (r *Regs) FP() uint64 { return r.raw.Rbp }

// TLS is the thread pointer (the fs base on x86-64).
func (r *Regs) TLS() uint64 { return r.raw.Fs_base }

// Raw exposes the kernel's structure for callers that need every field.
func (r *Regs) Raw() *unix.PtraceRegs { return &r.raw }

// DWARF returns the register with DWARF number n (System V x86-64 psABI).
func (r *Regs) DWARF(n int) (uint64, bool) {
	x := &r.raw
	switch n {
	case 0:
		return x.Rax, true
	case 1:
		return x.Rdx, true
	case 2:
		return x.Rcx, true
	case 3:
		return x.Rbx, true
	case 4:
		return x.Rsi, true
	case 5:
		return x.Rdi, true
	case 6:
		return x.Rbp, true
	case 7:
		return x.Rsp, true
	case 8:
		return x.R8, true
	case 9:
		return x.R9, true
	case 10:
		return x.R10, true
	case 11:
		return x.R11, true
	case 12:
		return x.R12, true
	case 13:
		return x.R13, true
	case 14:
		return x.R14, true
	case 15:
		return x.R15, true
	case 16:
		return x.Rip, true
	}
	return 0, false
}

// InSyscall reports whether the thread stopped inside a system call that
// the kernel will restart or complete when it resumes.
func (r *Regs) InSyscall() bool { return int64(r.raw.Orig_rax) >= 0 }

// setSyscall prepares the registers to execute system call nr with args
// at pc, a syscall instruction. orig_rax is set to -1 so that the kernel's
// restart logic for the interrupted call does not touch the injected one.
func (r *Regs) setSyscall(pc uint64, nr int, args []uint64) {
	x := &r.raw
	x.Rip = pc
	x.Rax = uint64(nr)
	x.Orig_rax = ^uint64(0)
	dst := []*uint64{&x.Rdi, &x.Rsi, &x.Rdx, &x.R10, &x.R8, &x.R9}
	for i, a := range args {
		*dst[i] = a
	}
}

func (r *Regs) syscallResult() uint64 { return r.raw.Rax }

const eintr = 4

// interruptedByStop reports whether the thread stopped at the return of a
// system call that our stop made fail with EINTR. Most blocking calls
// return an internal ERESTART code that the kernel turns into a transparent
// restart, but some (epoll_wait, epoll_pwait, io_getevents, sigtimedwait)
// return EINTR to any interruption, including a ptrace stop.
func (r *Regs) interruptedByStop() bool {
	return int64(r.raw.Orig_rax) >= 0 && int64(r.raw.Rax) == -eintr
}

// rewindSyscall makes the thread execute its system call again when it
// resumes: back over the 2-byte syscall instruction, with the call number
// in rax. The argument registers still hold the arguments, since the
// kernel preserves them across a call.
func (r *Regs) rewindSyscall() {
	r.raw.Rip -= 2
	r.raw.Rax = r.raw.Orig_rax
}

// setPC points the thread at code to run, with orig_rax -1 so that the
// restart logic of an interrupted system call leaves it alone.
func (r *Regs) setPC(pc uint64) {
	r.raw.Rip = pc
	r.raw.Orig_rax = ^uint64(0)
}

// Result is the register that holds a system call's result (rax).
func (r *Regs) Result() uint64 { return r.raw.Rax }

// syscallInsnLen is the length of the syscall instruction (0f 05).
const syscallInsnLen = 2

// setCall prepares a call of fn with args (System V AMD64: rdi, rsi, rdx,
// rcx, r8, r9) below the current stack, past the 128-byte red zone, and
// returns where the return address goes. At the callee's entry the stack
// pointer is 8 below a 16-byte boundary, as after a call instruction.
func (r *Regs) setCall(fn uint64, args []uint64) uint64 {
	x := &r.raw
	sp := (x.Rsp - 128 - 256) &^ 15
	sp -= 8
	x.Rsp = sp
	x.Rip = fn
	x.Orig_rax = ^uint64(0)
	x.Rax = 0 // no vector registers for a variadic callee
	dst := []*uint64{&x.Rdi, &x.Rsi, &x.Rdx, &x.Rcx, &x.R8, &x.R9}
	for i, a := range args {
		*dst[i] = a
	}
	return sp
}

// SetDWARF gives the register with DWARF number n the value v; it reports
// false for a number it does not hold.
func (r *Regs) SetDWARF(n int, v uint64) bool {
	x := &r.raw
	dst := []*uint64{&x.Rax, &x.Rdx, &x.Rcx, &x.Rbx, &x.Rsi, &x.Rdi, &x.Rbp, &x.Rsp,
		&x.R8, &x.R9, &x.R10, &x.R11, &x.R12, &x.R13, &x.R14, &x.R15, &x.Rip}
	if n < 0 || n >= len(dst) {
		return false
	}
	*dst[n] = v
	return true
}

// SkipSyscall, at a system call entry stop, makes the kernel skip the
// call and return to the registers as they are now set, instead of
// making it.
func (r *Regs) SkipSyscall() { r.raw.Orig_rax = ^uint64(0) }
