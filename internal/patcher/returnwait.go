package patcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"golang.org/x/sys/unix"
)

// A thread found inside a function being replaced is not waited for by
// letting the process run and looking again: a function that sleeps
// inside, or one that eight threads call in a loop, is found busy at
// every look. Instead the patcher takes the return address of the
// thread's outermost unsafe frame off its stack and puts there the
// address of a return hook (arch.ReturnHook) in a page of its own, then
// lets the thread run with PTRACE_SYSCALL until it stops at the hook's
// system call: at that moment the frame has returned and the thread has
// not yet run a single instruction of its caller. The patcher then moves
// the thread past the hook, as if the frame had returned directly, and
// checks again. docs/safety.md describes the model and what the target
// sees if hotpatch dies meanwhile.

// parkBudget is how long the threads that are not inside a danger range
// stay stopped while those that are run towards their hooks. Functions
// that return within microseconds (hot functions) thus patch in one
// pause; a thread that takes longer (it sleeps, or waits for a parked
// thread) gets the others running again.
const parkBudget = 2 * time.Millisecond

// hookPageSize is the size of the page of return hooks.
const hookPageSize = 4096

// errHooksFull says the page of hooks is used up; the patcher falls back
// to retrying.
var errHooksFull = errors.New("no room for another return hook")

// hook is one planted return hook.
type hook struct {
	th        *ptrace.Thread
	busy      *BusyError
	addr      uint64 // the hook's code
	entry     uint64 // the address written into the stack
	stopPC    uint64 // the program counter at its system call
	slot, ret uint64
	done      bool // the frame returned, or the hook was taken back
	// arrived is when the thread stopped at the hook; it stays stopped
	// from then on, which is the longest single-thread stop reported.
	arrived time.Time
}

// returnWait is the state of the waits of one pause.
type returnWait struct {
	s     *session
	c     *ptrace.Ctl
	page  uint64
	next  int
	hooks []*hook
	// leaked is set when a hook could not be taken back (its stack slot
	// changed: the thread left the frame by longjmp or an exception),
	// so the page must stay mapped.
	leaked bool
	// rounds counts the waits.
	rounds int
}

// plant puts hooks on the return addresses of the given threads' outermost
// unsafe frames. Every thread is stopped.
func (w *returnWait) plant(unsafe []unsafeThread) ([]*hook, error) {
	a := w.s.a
	if w.page == 0 {
		th := w.c.Threads()[0]
		addr, err := w.c.Syscall(th, w.s.insn, a.Sys.Mmap, 0, hookPageSize,
			unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return nil, fmt.Errorf("map a page for return hooks in pid %d: %w", w.s.p.Pid, err)
		}
		w.page = addr
	}
	var planted []*hook
	for _, u := range unsafe {
		if (w.next+1)*arch.ReturnHookSize > hookPageSize {
			return planted, errHooksFull
		}
		code := a.EncodeReturnHook(u.ret)
		h := &hook{th: u.th, busy: u.busy, addr: w.page + uint64(w.next*arch.ReturnHookSize), slot: u.slot, ret: u.ret}
		h.entry, h.stopPC = h.addr+uint64(code.Entry), h.addr+uint64(code.Stop)
		w.next++
		if err := w.s.mem.WriteAt(code.Code, h.addr); err != nil {
			return planted, fmt.Errorf("write a return hook into pid %d: %w", w.s.p.Pid, err)
		}
		// The hook is complete before the stack points at it.
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], h.entry)
		if err := w.s.mem.WriteAt(b[:], h.slot); err != nil {
			return planted, fmt.Errorf("hook the return of %s in thread %d of pid %d: %w", u.busy.Function, u.th.Tid, w.s.p.Pid, err)
		}
		w.hooks = append(w.hooks, h)
		planted = append(planted, h)
	}
	return planted, nil
}

// wait lets the hooked threads run, alone for parkBudget and then with
// every other thread, until each has returned to its hook, or the deadline
// passes. It returns nil when every hooked frame has returned; the hooked
// threads are then stopped, the others possibly running. On the deadline
// it returns the BusyError of a frame that did not return.
func (w *returnWait) wait(planted []*hook, deadline time.Time) error {
	w.rounds++
	for _, h := range planted {
		if err := w.c.ResumeOne(h.th, true); err != nil {
			return err
		}
	}
	parkUntil := time.Now().Add(parkBudget)
	running := false
	pause := 5 * time.Microsecond
	for {
		pending := 0
		for _, h := range planted {
			if h.done {
				continue
			}
			if err := w.poll(h); err != nil {
				return err
			}
			if !h.done {
				pending++
			}
		}
		if running {
			if err := w.serveOthers(); err != nil {
				return err
			}
		}
		if pending == 0 {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			for _, h := range planted {
				if !h.done {
					return h.busy
				}
			}
		}
		if !running && now.After(parkUntil) {
			// Too long for a hot function: the hooked threads may
			// wait for one of the parked ones. Everyone runs.
			running = true
			if err := w.serveOthers(); err != nil {
				return err
			}
		}
		// The tracer may run at a real-time priority: it sleeps between
		// looks rather than spin on a CPU a hooked thread may need.
		ts := unix.NsecToTimespec(pause.Nanoseconds())
		_ = unix.Nanosleep(&ts, nil)
		pause = min(2*pause, time.Millisecond)
	}
}

// poll collects a stop of a hooked thread: at its hook it is moved past
// it; at any other stop it is resumed.
func (w *returnWait) poll(h *hook) error {
	stopped, err := w.c.Poll(h.th)
	if err != nil || !stopped {
		return err
	}
	if _, ok := w.c.Thread(h.th.Tid); !ok {
		// The thread exited: its frame is gone. Its stack may be reused,
		// so the slot is left alone, and so is the page.
		h.done, w.leaked = true, true
		return nil
	}
	if h.th.SyscallStop && h.th.Regs.PC() == h.stopPC {
		if err := w.skipHook(h); err != nil {
			return err
		}
		h.done, h.arrived = true, time.Now()
		return nil
	}
	return w.c.ResumeOne(h.th, true)
}

// skipHook moves a thread stopped at its hook's system call to where the
// hook would take it: the system call is skipped, the registers the hook
// saved are restored from the stack and the thread continues at the real
// return address. The hook is then no longer part of its state.
func (w *returnWait) skipHook(h *hook) error {
	code := w.s.a.EncodeReturnHook(h.ret)
	r := h.th.Regs
	sp := r.SP()
	buf := make([]byte, 8*len(code.Saved))
	if err := w.s.mem.ReadAt(buf, sp); err != nil {
		return fmt.Errorf("read the registers a return hook saved in thread %d of pid %d: %w", h.th.Tid, w.s.p.Pid, err)
	}
	for i, n := range code.Saved {
		r.SetDWARF(n, binary.LittleEndian.Uint64(buf[8*i:]))
	}
	r.SetDWARF(w.s.a.DWARFSP, sp+code.SavedSize)
	r.SetDWARF(w.s.a.DWARFPC, h.ret)
	r.SkipSyscall()
	if err := w.c.SetRegs(h.th, &r); err != nil {
		return err
	}
	h.th.Regs = r
	return nil
}

// serveOthers keeps the threads that are not hooked running: it resumes
// those stopped (parked, or stopped by a signal, or new), delivering their
// signals.
func (w *returnWait) serveOthers() error {
	hooked := make(map[int]bool, len(w.hooks))
	for _, h := range w.hooks {
		hooked[h.th.Tid] = true
	}
	for _, th := range w.c.Threads() {
		if hooked[th.Tid] {
			continue
		}
		if !th.Stopped {
			if _, err := w.c.Poll(th); err != nil {
				return err
			}
			if _, ok := w.c.Thread(th.Tid); !ok || !th.Stopped {
				continue
			}
		}
		if err := w.c.ResumeOne(th, false); err != nil {
			return err
		}
	}
	return nil
}

// takeBack undoes every hook not yet reached. Every thread must be
// stopped. A thread stopped on its hook is moved past it; otherwise the
// return address goes back into its slot, if the slot still holds the
// hook (a thread that left the frame by longjmp or an exception may have
// reused the memory; then the slot is left alone and the page stays).
func (w *returnWait) takeBack() error {
	var errs []error
	for _, h := range w.hooks {
		if h.done {
			continue
		}
		h.done = true
		if _, ok := w.c.Thread(h.th.Tid); !ok {
			w.leaked = true
			continue
		}
		pc := h.th.Regs.PC()
		if pc >= h.addr && pc < h.addr+arch.ReturnHookSize {
			if h.th.SyscallStop && pc == h.stopPC {
				if err := w.skipHook(h); err != nil {
					errs = append(errs, err)
					w.leaked = true
				}
				continue
			}
			// Stopped inside the hook but not at its system call (a
			// signal): it finishes the hook by itself.
			w.leaked = true
			continue
		}
		var b [8]byte
		if err := w.s.mem.ReadAt(b[:], h.slot); err != nil || binary.LittleEndian.Uint64(b[:]) != h.entry {
			w.leaked = true
			continue
		}
		binary.LittleEndian.PutUint64(b[:], h.ret)
		if err := w.s.mem.WriteAt(b[:], h.slot); err != nil {
			errs = append(errs, fmt.Errorf("restore the return address of thread %d of pid %d at %#x: %w", h.th.Tid, w.s.p.Pid, h.slot, err))
			w.leaked = true
		}
	}
	return errors.Join(errs...)
}

// longestStop is the longest a thread that reached its hook stayed
// stopped, up to the resume at end.
func (w *returnWait) longestStop(end time.Time) time.Duration {
	var longest time.Duration
	for _, h := range w.hooks {
		if !h.arrived.IsZero() && end.Sub(h.arrived) > longest {
			longest = end.Sub(h.arrived)
		}
	}
	return longest
}

// unmapPage removes the page of hooks after the pause, when nothing can
// return into it any more.
func (w *returnWait) unmapPage() error {
	if w.page == 0 || w.leaked {
		return nil
	}
	page := w.page
	w.page = 0
	return w.s.tr.Do(func(c *ptrace.Ctl) error {
		return w.s.withInjector(c, func(th *ptrace.Thread) error {
			if _, err := c.Syscall(th, w.s.insn, w.s.a.Sys.Munmap, page, hookPageSize); err != nil {
				return fmt.Errorf("unmap the page of return hooks at %#x in pid %d: %w", page, w.s.p.Pid, err)
			}
			return nil
		})
	})
}
