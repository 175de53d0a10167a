package arch

import "debug/elf"

// ResumeState is what a thread resumes with when it leaves injected code:
// its general registers by DWARF number (0 to 15 on x86-64, the stack
// pointer among them), its program counter and its flags. A system call
// the thread was stopped in is already rewound, when the kernel would
// have restarted it.
type ResumeState struct {
	Regs  [16]uint64
	PC    uint64
	Flags uint64
}

// ResumeBlockSize is the size of the block EncodeResumeBlock fills.
const ResumeBlockSize = 21 * 8

// ResumeCode ends injected code so that the thread goes back to what it
// was doing whether or not a tracer is still there. It raises a marker
// signal (one of MarkerSignals, named in the block) on the thread itself:
// a tracer sees a signal-delivery stop at Marker and restores the
// registers itself (suppressing the signal); without a tracer (the tool
// died) the signal's default action is to be ignored, and the code goes on
// to load every register from the block and jump back.
type ResumeCode struct {
	Code []byte
	// Marker is the offset, from the start of Code, of the program
	// counter at the stop.
	Marker int
}

// MarkerSignals are the signals ResumeCode may raise, in order of
// preference: SIGURG, SIGWINCH, SIGCHLD, SIGCONT, all ignored by default,
// so that the signal is dropped when no tracer is there to see it. The
// caller picks one the thread does not block (a blocked signal would not
// stop it) and, if it can, one the program does not handle (a handler
// would get one spurious call in that case).
var MarkerSignals = []int{23, 28, 17, 18}

// EncodeResume returns resume code placed at at, which reads the
// registers, and the thread to raise the marker signal on (with
// tgkill(tgid, tid)), from the block at block: the code can be written
// before the thread is chosen and stopped, the block only then. ok is
// false for an architecture without it.
func (a *Arch) EncodeResume(at, block uint64, tgid int) (rc ResumeCode, ok bool) {
	switch a.Machine {
	case elf.EM_X86_64:
		return encodeResumeAMD64(at, block, tgid), true
	}
	return ResumeCode{}, false
}

// EncodeResumeBlock lays out st, the thread id tid and the marker signal
// sig as the code of EncodeResume reads them.
func (a *Arch) EncodeResumeBlock(st ResumeState, tid, sig int) []byte {
	switch a.Machine {
	case elf.EM_X86_64:
		return resumeBlockAMD64(st, tid, sig)
	}
	return nil
}
