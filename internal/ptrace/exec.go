package ptrace

import (
	"errors"
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// ErrNoExec means a process seized for its exec never completed one: the
// execve failed, or the thread that called it was not the one seized.
var ErrNoExec = errors.New("the process did not complete its exec")

const execSeizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEEXEC

// SeizeForExec seizes tid, a thread that is inside execve (held by an
// exec permission check), with PTRACE_O_TRACEEXEC, so that the new
// program stops before its first instruction. The thread is not stopped.
func (c *Ctl) SeizeForExec(tid int) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, execSeizeOptions, 0, 0)
	if errno != 0 {
		return &Error{Op: "seize for exec", Pid: c.pid, Tid: tid, Err: errno}
	}
	c.threads[tid] = &Thread{Tid: tid}
	return nil
}

// waitPoll waits for a state change of tid, polling so that a thread that
// never stops costs the tracer no more than timeout. A blocking wait4
// would hold the tracer thread for as long as the program runs.
func waitPoll(tid int, deadline time.Time) (unix.WaitStatus, bool, error) {
	pause := 50 * time.Microsecond
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ws, false, err
		}
		if got == tid {
			return ws, true, nil
		}
		if time.Now().After(deadline) {
			return ws, false, nil
		}
		time.Sleep(pause)
		pause = min(2*pause, 2*time.Millisecond)
	}
}

// WaitExec waits, up to timeout, for the exec stop of the thread seized
// with SeizeForExec and returns it stopped there, with its registers read.
// When no exec stop comes (the exec failed, the thread exited, or the
// timeout passed) the thread is released and the error wraps ErrNoExec.
func (c *Ctl) WaitExec(tid int, timeout time.Duration) (*Thread, error) {
	th, ok := c.threads[tid]
	if !ok {
		return nil, fmt.Errorf("wait for the exec of pid %d: thread %d is not seized", c.pid, tid)
	}
	deadline := time.Now().Add(timeout)
	for {
		ws, got, err := waitPoll(tid, deadline)
		if err != nil {
			delete(c.threads, tid)
			return nil, fmt.Errorf("wait for the exec of pid %d: %v: %w", c.pid, err, ErrNoExec)
		}
		if !got {
			c.release(th)
			return nil, fmt.Errorf("pid %d did not exec within %v: %w", c.pid, timeout, ErrNoExec)
		}
		if ws.Exited() || ws.Signaled() {
			delete(c.threads, tid)
			return nil, fmt.Errorf("pid %d exited before its exec completed: %w", c.pid, ErrNoExec)
		}
		if !ws.Stopped() {
			continue
		}
		th.Stopped = true
		if ws.TrapCause() == unix.PTRACE_EVENT_EXEC {
			if err := c.getRegs(th); err != nil {
				return nil, err
			}
			return th, nil
		}
		// The exec failed and the old program went on: it is none of
		// our business. A signal it stopped for is passed on.
		if sig := ws.StopSignal(); ws.TrapCause() <= 0 && sig != unix.SIGTRAP {
			th.pendingSig = sig
		}
		c.release(th)
		return nil, fmt.Errorf("pid %d stopped before any exec: %w", c.pid, ErrNoExec)
	}
}

// release detaches th, stopping it first when it runs (the kernel
// detaches only stopped tracees).
func (c *Ctl) release(th *Thread) {
	if !th.Stopped {
		if err := unix.PtraceInterrupt(th.Tid); err == nil {
			if ws, got, _ := waitPoll(th.Tid, time.Now().Add(time.Second)); got && ws.Stopped() {
				th.Stopped = true
				if sig := ws.StopSignal(); ws.TrapCause() <= 0 && sig != unix.SIGTRAP {
					th.pendingSig = sig
				}
			}
		}
	}
	_, _, _ = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.Tid), 0, uintptr(th.pendingSig), 0, 0)
	delete(c.threads, th.Tid)
	c.LastResume = time.Now()
}

// RunToEntry lets th, stopped at its exec, run until the program's entry
// point: the dynamic linker maps the libraries and runs their
// constructors, the executable's own have not run yet. A trap is planted
// at entry and removed before RunToEntry returns, on every path: a trap
// left behind would kill the program once it is no longer traced. On
// success th is stopped with its PC at entry; threads created on the way
// (by a library's constructor) are traced and left running. The trap
// instruction comes from the caller's arch table.
func (c *Ctl) RunToEntry(th *Thread, entry uint64, trap []byte, timeout time.Duration) error {
	mem, err := proc.OpenMem(c.pid)
	if err != nil {
		return fmt.Errorf("run pid %d to its entry point: %w", c.pid, err)
	}
	defer mem.Close()
	saved := make([]byte, len(trap))
	if err := mem.ReadAt(saved, entry); err != nil {
		return fmt.Errorf("run pid %d to its entry point: read the entry at %#x: %w", c.pid, entry, err)
	}
	if err := mem.WriteAt(trap, entry); err != nil {
		return fmt.Errorf("run pid %d to its entry point: plant a trap at %#x: %w", c.pid, entry, err)
	}
	restore := func() error {
		if err := mem.WriteAt(saved, entry); err != nil {
			return fmt.Errorf("remove the trap at the entry %#x of pid %d: %w", entry, c.pid, err)
		}
		return nil
	}
	err = c.runUntilTrap(th, entry, len(trap), time.Now().Add(timeout))
	if rerr := restore(); rerr != nil {
		// The program would die of SIGTRAP at its entry; better to hold
		// it stopped and say so.
		return rerr
	}
	if err != nil {
		if _, ok := c.threads[th.Tid]; ok {
			c.release(th)
		}
		return err
	}
	regs := th.Regs
	regs.setPC(entry)
	if err := c.SetRegs(th, &regs); err != nil {
		c.release(th)
		return err
	}
	th.Regs = regs
	return nil
}

// runUntilTrap continues th until it reports the trap at entry (a trap
// instruction leaves the PC at or just past itself, depending on the
// architecture). Signals meanwhile are delivered; new threads run on.
func (c *Ctl) runUntilTrap(th *Thread, entry uint64, trapLen int, deadline time.Time) error {
	sig := 0
	for {
		if err := unix.PtraceCont(th.Tid, sig); err != nil {
			return &Error{Op: "continue", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		th.Stopped, sig = false, 0
		ws, got, err := waitPoll(th.Tid, deadline)
		if err != nil {
			return &Error{Op: "wait for", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		if !got {
			// Stop it, so that the trap can be removed safely.
			if err := unix.PtraceInterrupt(th.Tid); err == nil {
				if ws, got, _ := waitPoll(th.Tid, time.Now().Add(time.Second)); got && ws.Stopped() {
					th.Stopped = true
					if s := ws.StopSignal(); ws.TrapCause() <= 0 && s != unix.SIGTRAP {
						th.pendingSig = s
					}
				}
			}
			return fmt.Errorf("pid %d did not reach its entry point %#x in time", c.pid, entry)
		}
		if ws.Exited() || ws.Signaled() {
			delete(c.threads, th.Tid)
			return fmt.Errorf("pid %d exited before its entry point: %w", c.pid, proc.ErrNoProcess)
		}
		if !ws.Stopped() {
			continue
		}
		th.Stopped = true
		switch cause := ws.TrapCause(); {
		case cause == unix.PTRACE_EVENT_CLONE:
			msg, err := unix.PtraceGetEventMsg(th.Tid)
			if err != nil {
				return &Error{Op: "read clone event of", Pid: c.pid, Tid: th.Tid, Err: err}
			}
			child := &Thread{Tid: int(msg)}
			c.threads[child.Tid] = child
			// The child starts in a stop of its own; let it run.
			if ws, got, _ := waitPoll(child.Tid, time.Now().Add(time.Second)); got && ws.Stopped() {
				_ = unix.PtraceCont(child.Tid, 0)
			}
			continue
		case cause > 0:
			continue
		}
		s := ws.StopSignal()
		if s != unix.SIGTRAP {
			sig = int(s)
			continue
		}
		if err := c.getRegs(th); err != nil {
			return err
		}
		if pc := th.Regs.PC(); pc == entry || pc == entry+uint64(trapLen) {
			return nil
		}
		// A trap of the program's own: deliver it.
		sig = int(s)
	}
}
