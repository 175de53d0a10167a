package patcher

import (
	"errors"
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// apply maps, fills and activates the planned regions.
func (s *session) apply(plans []*plan, res *Result) error {
	if s.mem == nil {
		return fmt.Errorf("session not open")
	}
	// Refuse before changing anything when the process cannot be
	// stopped as a whole; the pause checks again.
	if err := s.checkStoppable(); err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, pl := range plans {
		pl.hdr.AppliedAt = now.Format(time.RFC3339Nano)
	}
	// Mapping, filling and registering the regions' call frame
	// information take one stop of one thread.
	if err := s.mapRegions(plans); err != nil {
		return s.rollbackMapped(err)
	}
	if err := s.opt.hit("after-mmap"); err != nil {
		return s.rollbackMapped(err)
	}
	if err := s.resolvePatchIFuncs(plans); err != nil {
		return s.rollbackMapped(err)
	}
	var danger []dangerRange
	var writes []jumpWrite
	var replaced []*Region
	var extra []*linked
	for _, pl := range plans {
		for _, f := range pl.l.funcs {
			danger = append(danger, dangerRange{start: f.Old, end: f.Old + f.OldSize, name: f.Name, entryOK: s.entrySafe(f), noReturn: s.neverReturns(f)})
		}
		if r := pl.replaces; r != nil && r.hdr.TextEnd > r.hdr.TextStart {
			danger = append(danger, dangerRange{start: r.hdr.TextStart, end: r.hdr.TextEnd, name: "the code of patch " + r.hdr.ID + " level " + fmt.Sprint(r.hdr.Level)})
			replaced = append(replaced, r)
		}
		writes = append(writes, pl.jumps...)
		extra = append(extra, pl.l)
	}
	hdrs := make([]*regionHeader, len(s.regions))
	for i, r := range s.regions {
		hdrs[i] = r.hdr
	}
	chk, err := newChecker(s.p, hdrs, extra, danger)
	if err != nil {
		return s.rollbackMapped(err)
	}
	defer chk.close()
	pause, retries, err := s.pause(chk, writes, true)
	res.Retries = retries
	if err != nil {
		return err
	}
	res.PauseUS = pause.Microseconds()
	for _, pl := range plans {
		pl.hdr.PauseUS = res.PauseUS
		if err := s.writeHeader(pl.hdr, pl.l.headerSize); err != nil {
			return err
		}
	}
	if len(replaced) > 0 {
		s.mapped = nil
		for _, r := range replaced {
			s.mapped = append(s.mapped, [2]uint64{r.hdr.Base, r.hdr.Size})
			s.noteRegistered(r.hdr)
		}
		if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
			return fmt.Errorf("the new level is active, but removing the old one failed: %w", err)
		}
		s.noteThreadStop()
	}
	res.ThreadStopUS = s.threadStop.Microseconds()
	return nil
}

// entrySafe reports whether a thread stopped at the first instruction of
// f may be redirected: f gets a jump, and no branch inside f leads back to
// its entry (a loop whose head is the entry).
func (s *session) entrySafe(f regionFunc) bool {
	if f.RangeOnly || f.OldSize > 1<<20 {
		return false
	}
	code := make([]byte, f.OldSize)
	if err := proc.ReadMem(s.p.MemPid, f.Old, code); err != nil {
		return false
	}
	return !s.a.BranchesTo(code, f.Old, f.Old)
}

// neverReturns reports whether f's old code has no return instruction.
func (s *session) neverReturns(f regionFunc) bool {
	if f.RangeOnly || f.OldSize > 1<<20 || f.OldSize == 0 {
		return false
	}
	code := make([]byte, f.OldSize)
	if err := proc.ReadMem(s.p.MemPid, f.Old, code); err != nil {
		return false
	}
	return !s.a.Returns(code)
}

func (s *session) writeHeader(h *regionHeader, room uint64) error {
	b, err := h.encode()
	if err != nil {
		return err
	}
	if uint64(len(b)) > room {
		return fmt.Errorf("region header of patch %s is %d bytes, %d reserved", h.ID, len(b), room)
	}
	return s.mem.WriteAt(b, h.Base)
}

func (s *session) writeImage(pl *plan) error {
	b, err := pl.hdr.encode()
	if err != nil {
		return err
	}
	if uint64(len(b)) > pl.l.headerSize {
		return fmt.Errorf("region header of patch %s is %d bytes, %d reserved", pl.hdr.ID, len(b), pl.l.headerSize)
	}
	copy(pl.l.image, b)
	// One write: the image is contiguous, and /proc/PID/mem writes the
	// read-only and executable parts as well.
	if err := s.mem.WriteAt(pl.l.image, pl.l.base); err != nil {
		return fmt.Errorf("copy patch %s into pid %d: %w", pl.hdr.ID, s.p.Pid, err)
	}
	return nil
}

// pause stops every thread, checks that none is in a danger range
// (retrying within the bounds), writes the jumps and resumes. With
// rollbackRegions, a failure also unmaps the regions this operation
// mapped, before any thread resumes. It returns the length of the
// successful stop.
func (s *session) pause(chk *checker, writes []jumpWrite, rollbackRegions bool) (time.Duration, int, error) {
	if err := s.checkStoppable(); err != nil {
		if rollbackRegions {
			return 0, 0, s.rollbackMapped(err)
		}
		return 0, 0, err
	}
	var pause time.Duration
	committed := false
	attempts, retries := 0, 0
	deadline := time.Now().Add(s.opt.Timeout)
	maxAttempts := s.opt.Retries + 1
	w := &returnWait{s: s}
	// A garbage collection inside the stop would lengthen it; the few
	// allocations of the check can wait.
	defer holdGC()()
	err := s.tr.Do(func(c *ptrace.Ctl) error {
		w.c = c
		restore := c.Realtime()
		defer restore()
		// fail takes back the hooks with every thread stopped, then
		// undoes the writes and resumes.
		fail := func(cause error, done []jumpWrite) error {
			if len(w.hooks) > 0 {
				if err := c.StopAll(); err != nil {
					w.leaked = true
					return s.failInPause(c, fmt.Errorf("%w (and stopping the threads to take back return hooks failed: %v)", cause, err), done)
				}
				if err := w.takeBack(); err != nil {
					cause = fmt.Errorf("%w (taking back return hooks: %v)", cause, err)
				}
			}
			return s.failInPause(c, cause, done)
		}
		backoff := time.Millisecond
		for {
			attempts++
			if err := c.StopAll(); err != nil {
				return fail(err, nil)
			}
			unsafe, err := chk.assess(c.Threads(), false)
			if err != nil {
				return fail(err, nil)
			}
			if len(unsafe) == 0 {
				break
			}
			busy := unsafe[0].busy
			busy.Attempts = attempts
			hookable := true
			for _, u := range unsafe {
				if u.danger >= 0 && chk.danger[u.danger].noReturn {
					u.busy.Attempts = attempts
					return fail(&NeverReturnsError{Busy: u.busy}, nil)
				}
				hookable = hookable && u.slot != 0
			}
			if hookable && time.Now().Before(deadline) {
				planted, err := w.plant(unsafe)
				if err == nil {
					err = w.wait(planted, deadline)
				}
				var be *BusyError
				if errors.As(err, &be) {
					be.Attempts = attempts
				}
				if err == nil {
					continue
				}
				if !errors.Is(err, errHooksFull) {
					return fail(err, nil)
				}
			}
			// Frames found by a scan cannot be hooked: let the process
			// run and look again.
			retries++
			if retries >= maxAttempts || time.Now().Add(backoff).After(deadline) {
				return fail(busy, nil)
			}
			if len(w.hooks) > 0 {
				if err := w.takeBack(); err != nil {
					return fail(err, nil)
				}
			}
			if err := c.ResumeAll(); err != nil {
				return fail(err, nil)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 50*time.Millisecond)
		}
		var done []jumpWrite
		for i, wr := range writes {
			if err := s.mem.WriteAt(wr.new, wr.addr); err != nil {
				return fail(fmt.Errorf("write the jump at %s: %w", s.p.describe(wr.addr), err), done)
			}
			done = append(done, wr)
			if i == 0 {
				if err := s.opt.hit("after-first-jump"); err != nil {
					return fail(err, done)
				}
			}
		}
		// The jumps are in: from here on, the new code may run, and no
		// failure may remove it.
		committed = true
		if err := c.DetachAll(); err != nil {
			return err
		}
		pause = c.LastResume.Sub(c.FirstStop)
		if d := w.longestStop(c.LastResume); d > s.threadStop {
			s.threadStop = d
		}
		return nil
	})
	if uerr := w.unmapPage(); uerr != nil && err == nil && !committed {
		err = uerr
	}
	if err != nil && rollbackRegions && !committed {
		err = s.rollbackMapped(err)
	}
	return pause, attempts - 1, err
}

// NeverReturnsError says a thread is inside a function being replaced
// that has no return instruction: the frame lives as long as the thread,
// so the patch can never be applied while it runs.
type NeverReturnsError struct {
	Busy *BusyError
}

func (e *NeverReturnsError) Error() string {
	b := e.Busy
	return fmt.Sprintf("thread %d of pid %d is inside %s (frame %d), which never returns (it has no return instruction: an endless loop, such as a service's main loop or a thread's start routine, that the changed code was inlined into): "+
		"the patch cannot apply while this thread runs; rebuild the fix so that the changed code is a function of its own that the loop calls (for example mark it __attribute__((noinline)))",
		b.Tid, b.Pid, b.Function, b.Frame)
}

func (e *NeverReturnsError) Unwrap() error { return e.Busy }

// ErrUnstoppable means a thread sleeps uninterruptibly and would hold every
// other thread stopped until it wakes.
var ErrUnstoppable = errors.New("a thread is in uninterruptible sleep")

// checkStoppable refuses to stop a process while one of its threads is in
// uninterruptible sleep (state D: a hung file system, a device): such a
// thread enters the ptrace stop only when it wakes, and all the others
// would wait stopped until then. A short D (disk I/O) passes: the check
// waits a little for it.
func (s *session) checkStoppable() error {
	deadline := time.Now().Add(min(max(s.opt.Timeout, 100*time.Millisecond), time.Second))
	for {
		tids, err := proc.Threads(s.p.Pid)
		if err != nil {
			return err
		}
		stuck := 0
		for _, tid := range tids {
			if st, err := proc.ThreadState(s.p.Pid, tid); err == nil && st == 'D' {
				stuck = tid
				break
			}
		}
		if stuck == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thread %d of pid %d: %w (state D, waiting on a device or a file system); every other thread would stay stopped until it wakes: retry later",
				stuck, s.p.Pid, ErrUnstoppable)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failInPause undoes the writes already made and resumes the threads.
// The new regions are unmapped afterwards (pause does it): with the old
// bytes back, no thread can reach them, and withdrawing their call frame
// information takes a lock of the target's unwinder that a thread
// stopped at a random place might hold.
// new regions, all before the threads resume.
func (s *session) failInPause(c *ptrace.Ctl, cause error, done []jumpWrite) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if err := s.mem.WriteAt(done[i].old, done[i].addr); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", s.p.describe(done[i].addr), err))
		}
	}
	if err := c.DetachAll(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (rollback incomplete: %v)", cause, errors.Join(errs...))
	}
	return cause
}
