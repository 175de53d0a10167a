package ptrace

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// SyscallError is a system call that ran in the target and failed there.
type SyscallError struct {
	Nr    int
	Errno unix.Errno
}

func (e *SyscallError) Error() string {
	return fmt.Sprintf("system call %d in the target failed: %v", e.Nr, e.Errno)
}

func (e *SyscallError) Unwrap() error { return e.Errno }

// Syscall executes system call nr with args on the stopped thread th,
// stepping over the syscall instruction at insn (an address in the target
// holding the arch's syscall instruction, found with FindSyscallInsn).
// Every register is restored afterwards, orig_rax included, so a thread
// that was stopped inside a blocking call (read, futex, nanosleep...)
// restarts it transparently when resumed.
func (c *Ctl) Syscall(th *Thread, insn uint64, nr int, args ...uint64) (uint64, error) {
	if !th.Stopped {
		return 0, fmt.Errorf("inject system call %d in thread %d of pid %d: thread is not stopped", nr, th.Tid, c.pid)
	}
	if len(args) > 6 {
		return 0, fmt.Errorf("inject system call %d: %d arguments, at most 6", nr, len(args))
	}
	saved := th.Regs
	work := saved
	work.setSyscall(insn, nr, args)
	if err := c.SetRegs(th, &work); err != nil {
		return 0, err
	}
	res, stepErr := c.stepOverSyscall(th, insn)
	// Restore even when the step failed: the thread must not resume at
	// the syscall instruction with our arguments.
	if err := c.SetRegs(th, &saved); err != nil {
		if stepErr == nil {
			stepErr = err
		}
	}
	th.Regs = saved
	if stepErr != nil {
		return 0, fmt.Errorf("inject system call %d in thread %d of pid %d: %w", nr, th.Tid, c.pid, stepErr)
	}
	if v := int64(res); v < 0 && v > -4096 {
		return 0, &SyscallError{Nr: nr, Errno: unix.Errno(-v)}
	}
	return res, nil
}

func (c *Ctl) stepOverSyscall(th *Thread, insn uint64) (uint64, error) {
	insnLen := uint64(syscallInsnLen)
	for attempt := 0; attempt < 16; attempt++ {
		if err := unix.PtraceSingleStep(th.Tid); err != nil {
			return 0, &Error{Op: "single-step", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		th.Stopped = false
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(th.Tid, &ws, unix.WALL, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return 0, &Error{Op: "wait for", Pid: c.pid, Tid: th.Tid, Err: err}
			}
			break
		}
		if ws.Exited() || ws.Signaled() {
			delete(c.threads, th.Tid)
			return 0, fmt.Errorf("thread %d exited during the injected call: %w", th.Tid, proc.ErrNoProcess)
		}
		th.Stopped = true
		var r Regs
		if err := unix.PtraceGetRegs(th.Tid, &r.raw); err != nil {
			return 0, &Error{Op: "read registers of", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		if ws.TrapCause() == unix.PTRACE_EVENT_CLONE {
			if msg, err := unix.PtraceGetEventMsg(th.Tid); err == nil {
				c.threads[int(msg)] = &Thread{Tid: int(msg)}
			}
		} else if sig := ws.StopSignal(); sig != unix.SIGTRAP && ws.TrapCause() <= 0 {
			// A signal for the program: keep it for later.
			th.pendingSig = sig
		}
		// Where the thread stopped says whether the call ran, whatever
		// the kind of stop: a pending interrupt may be reported after
		// the step instead of the step's own trap. Stepping again after
		// the call would execute the target's next instruction with our
		// registers.
		switch r.PC() {
		case insn + insnLen:
			return r.syscallResult(), nil
		case insn:
			continue
		default:
			return 0, fmt.Errorf("thread %d stopped at %#x, neither before nor after the system call at %#x", th.Tid, r.PC(), insn)
		}
	}
	return 0, fmt.Errorf("thread %d did not complete the system call", th.Tid)
}

// FindSyscallInsn finds the arch's syscall instruction in executable
// memory of the process: the vDSO first, then the C library, then any
// executable file mapping. Nothing is written into the target for it.
func FindSyscallInsn(pid int, a *arch.Arch, maps []proc.Mapping) (uint64, error) {
	rank := func(m proc.Mapping) int {
		switch {
		case m.Path == "[vdso]":
			return 0
		case strings.Contains(m.Path, "/libc.so") || strings.Contains(m.Path, "/libc-"):
			return 1
		case m.IsFile():
			return 2
		}
		return -1
	}
	for want := 0; want <= 2; want++ {
		for _, m := range maps {
			if !m.Perms.Exec || !m.Perms.Read || rank(m) != want {
				continue
			}
			buf := make([]byte, min(m.Size(), 1<<20))
			if err := proc.ReadMem(pid, m.Start, buf); err != nil {
				continue
			}
			if i := bytes.Index(buf, a.SyscallInsn); i >= 0 {
				return m.Start + uint64(i), nil
			}
		}
	}
	return 0, fmt.Errorf("find a system call instruction in pid %d: none in its executable mappings", pid)
}

// RunCode runs code at addr on the stopped thread th until it traps, and
// returns the registers at the trap; every register is restored
// afterwards, as for Syscall. The code must end in a trap on every path
// (arch.EncodeSyscalls writes such code).
func (c *Ctl) RunCode(th *Thread, addr uint64) (Regs, error) {
	if !th.Stopped {
		return Regs{}, fmt.Errorf("run code in thread %d of pid %d: thread is not stopped", th.Tid, c.pid)
	}
	saved := th.Regs
	work := saved
	work.setPC(addr)
	if err := c.SetRegs(th, &work); err != nil {
		return Regs{}, err
	}
	at, runErr := c.contUntilTrap(th)
	if err := c.SetRegs(th, &saved); err != nil && runErr == nil {
		runErr = err
	}
	th.Regs = saved
	if runErr != nil {
		return Regs{}, fmt.Errorf("run code at %#x in thread %d of pid %d: %w", addr, th.Tid, c.pid, runErr)
	}
	return at, nil
}

// contUntilTrap runs th until it stops at the injected code's trap: the
// marker loop with no marker signal, which no stop ever carries.
func (c *Ctl) contUntilTrap(th *Thread) (Regs, error) {
	return c.contUntilMarker(th, 0, 0)
}

// Call calls the function at fn with integer args on the stopped thread
// th, as the platform's calling convention says, and returns its result.
// The function returns to ret, which must hold the arch's trap
// instruction. The call runs below the thread's stack pointer (past the
// red zone); every register is restored afterwards. Only functions that
// neither block nor take locks the stopped thread might hold are safe to
// call this way.
func (c *Ctl) Call(th *Thread, fn, ret uint64, args ...uint64) (uint64, error) {
	if !th.Stopped {
		return 0, fmt.Errorf("call %#x in thread %d of pid %d: thread is not stopped", fn, th.Tid, c.pid)
	}
	if len(args) > 6 {
		return 0, fmt.Errorf("call %#x: %d arguments, at most 6 in registers", fn, len(args))
	}
	saved := th.Regs
	work := saved
	sp := work.setCall(fn, args)
	// The return address is one stack word: PTRACE_POKEDATA is fine for
	// that, and works whatever the protection of the page.
	if _, err := unix.PtracePokeData(th.Tid, uintptr(sp), le64(ret)); err != nil {
		return 0, &Error{Op: "write the return address for", Pid: c.pid, Tid: th.Tid, Err: err}
	}
	if err := c.SetRegs(th, &work); err != nil {
		return 0, err
	}
	at, runErr := c.contUntilTrap(th)
	if err := c.SetRegs(th, &saved); err != nil && runErr == nil {
		runErr = err
	}
	th.Regs = saved
	if runErr != nil {
		return 0, fmt.Errorf("call %#x in thread %d of pid %d: %w", fn, th.Tid, c.pid, runErr)
	}
	if at.PC() < ret || at.PC() > ret+16 {
		return 0, fmt.Errorf("call %#x in thread %d of pid %d: it trapped at %#x instead of returning", fn, th.Tid, c.pid, at.PC())
	}
	return at.Result(), nil
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}
