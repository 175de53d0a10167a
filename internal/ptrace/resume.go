package ptrace

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// ResumeState is what th resumes with if it leaves injected code on its
// own (arch.EncodeResume): its registers as stopped, with an interrupted
// system call rewound to run again.
func (c *Ctl) ResumeState(th *Thread) arch.ResumeState { return th.Regs.resumeState() }

// RunCodeUntil runs code at addr on the stopped thread th until it stops
// with signal sig at marker, the stop of arch.ResumeCode, or traps on the
// way (a failed call); it returns the registers there and restores th's
// own. The marker's signal is not delivered. If the tool dies while the
// code runs, the thread finishes it and resumes on its own.
func (c *Ctl) RunCodeUntil(th *Thread, addr, marker uint64, sig int) (Regs, error) {
	if !th.Stopped {
		return Regs{}, fmt.Errorf("run code in thread %d of pid %d: thread is not stopped", th.Tid, c.pid)
	}
	saved := th.Regs
	work := saved
	work.setPC(addr)
	if err := c.SetRegs(th, &work); err != nil {
		return Regs{}, err
	}
	at, runErr := c.contUntilMarker(th, marker, sig)
	if err := c.SetRegs(th, &saved); err != nil && runErr == nil {
		runErr = err
	}
	th.Regs = saved
	if runErr != nil {
		return Regs{}, fmt.Errorf("run code at %#x in thread %d of pid %d: %w", addr, th.Tid, c.pid, runErr)
	}
	return at, nil
}

// contUntilMarker runs th until the injected code ends: at its trap, or
// (sig non-zero) stopped by the marker signal sig at marker. Event stops
// and the program's own signals on the way are passed over.
func (c *Ctl) contUntilMarker(th *Thread, marker uint64, sig int) (Regs, error) {
	for attempt := 0; attempt < 16; attempt++ {
		if err := unix.PtraceCont(th.Tid, 0); err != nil {
			return Regs{}, &Error{Op: "resume", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		th.Stopped = false
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(th.Tid, &ws, unix.WALL, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return Regs{}, &Error{Op: "wait for", Pid: c.pid, Tid: th.Tid, Err: err}
			}
			break
		}
		if ws.Exited() || ws.Signaled() {
			delete(c.threads, th.Tid)
			return Regs{}, fmt.Errorf("thread %d exited while running injected code: %w", th.Tid, proc.ErrNoProcess)
		}
		th.Stopped = true
		var r Regs
		if err := unix.PtraceGetRegs(th.Tid, &r.raw); err != nil {
			return Regs{}, &Error{Op: "read registers of", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		switch {
		case sig != 0 && ws.StopSignal() == unix.Signal(sig) && ws.TrapCause() <= 0 && r.PC() == marker:
			return r, nil
		case ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() <= 0:
			return r, nil
		case ws.TrapCause() > 0:
			if ws.TrapCause() == unix.PTRACE_EVENT_CLONE {
				if msg, err := unix.PtraceGetEventMsg(th.Tid); err == nil {
					c.threads[int(msg)] = &Thread{Tid: int(msg)}
				}
			}
			// Resuming from an event stop continues where the code was.
			if err := c.SetRegs(th, &r); err != nil {
				return Regs{}, err
			}
		default:
			// A signal for the program arrived: keep it for later and
			// let the code go on from where it was.
			th.pendingSig = ws.StopSignal()
		}
	}
	return Regs{}, fmt.Errorf("thread %d did not reach the end of the injected code", th.Tid)
}

// ptraceGetSigmask is PTRACE_GETSIGMASK (Linux 3.11).
const ptraceGetSigmask = 0x420a

// BlockedSignals returns the signal mask of the stopped thread th, bit n-1
// for signal n: a ptrace request, far cheaper inside a stop than reading
// /proc.
func (c *Ctl) BlockedSignals(th *Thread) (uint64, error) {
	var mask uint64
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceGetSigmask, uintptr(th.Tid), 8, uintptr(unsafe.Pointer(&mask)), 0, 0)
	if errno != 0 {
		return 0, &Error{Op: "read the signal mask of", Pid: c.pid, Tid: th.Tid, Err: errno}
	}
	return mask, nil
}
