package ptrace

import "github.com/hotpatch/hotpatch/internal/arch"

// The kernel's restart codes (include/linux/errno.h) and restart_syscall.
const (
	erestartsys          = 512
	erestartnointr       = 513
	erestartnohand       = 514
	erestartRestartblock = 516
	nrRestartSyscall     = 219
)

// resumeState is where the thread goes when it resumes without a tracer
// to restore its registers: a system call it was stopped in is rewound as
// the kernel would, to run again (restart_syscall for a call with a
// restart block, such as nanosleep).
func (r *Regs) resumeState() arch.ResumeState {
	x := r.raw
	if int64(x.Orig_rax) >= 0 {
		switch -int64(x.Rax) {
		case erestartsys, erestartnointr, erestartnohand:
			x.Rax = x.Orig_rax
			x.Rip -= syscallInsnLen
		case erestartRestartblock:
			x.Rax = nrRestartSyscall
			x.Rip -= syscallInsnLen
		}
	}
	var st arch.ResumeState
	rr := Regs{raw: x}
	for n := 0; n < 16; n++ {
		st.Regs[n], _ = rr.DWARF(n)
	}
	st.PC, st.Flags = x.Rip, x.Eflags
	return st
}
