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
const ResumeBlockSize = 20 * 8

// ResumeCode ends injected code so that the thread goes back to what it
// was doing whether or not a tracer is still there. It raises MarkerSignal
// on the thread itself: a tracer sees a signal-delivery stop at Marker and
// restores the registers itself (suppressing the signal); without a tracer
// (the tool died) the signal's default action is to be ignored, and the
// code goes on to load every register from the block and jump back.
type ResumeCode struct {
	Code []byte
	// Marker is the offset, from the start of Code, of the program
	// counter at the stop.
	Marker int
}

// MarkerSignal is the signal ResumeCode raises: SIGURG, ignored by
// default, so that it is dropped when no tracer is there to see it. A
// program that handles SIGURG gets one spurious call of its handler in
// that case.
const MarkerSignal = 23

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

// EncodeResumeBlock lays out st and the thread id tid as the code of
// EncodeResume reads them.
func (a *Arch) EncodeResumeBlock(st ResumeState, tid int) []byte {
	switch a.Machine {
	case elf.EM_X86_64:
		return resumeBlockAMD64(st, tid)
	}
	return nil
}
