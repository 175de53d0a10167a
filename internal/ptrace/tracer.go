// Package ptrace controls the threads of a traced process. The kernel
// accepts ptrace requests only from the thread that attached, so every
// request is made by one goroutine locked to its OS thread; callers hand it
// work with Do, and the whole stop-check-write-resume window of a patch
// runs as one such piece of work, without a goroutine hand-off inside it.
//
// Threads are seized (PTRACE_SEIZE), never attached with SIGSTOP, so the
// target sees no signal, and with PTRACE_O_TRACECLONE so that threads
// created meanwhile are traced from their first instruction.
// PTRACE_O_EXITKILL is never used: if the tool dies, the kernel detaches
// and the target keeps running.
package ptrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// ErrPermission means the kernel refused to let this process trace the
// target.
var ErrPermission = errors.New("ptrace not permitted")

// Error is a failed ptrace operation on one thread.
type Error struct {
	Op       string
	Pid, Tid int
	Err      error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s thread %d of pid %d: %v", e.Op, e.Tid, e.Pid, e.Err)
	switch {
	case errors.Is(e.Err, unix.EPERM):
		msg += ": " + permissionAdvice(e.Pid)
	case errors.Is(e.Err, unix.ESRCH):
		msg += " (the thread exited or is not stopped for the tracer)"
	}
	return msg
}

func (e *Error) Unwrap() []error {
	switch {
	case errors.Is(e.Err, unix.EPERM):
		return []error{e.Err, ErrPermission}
	case errors.Is(e.Err, unix.ESRCH):
		return []error{e.Err, proc.ErrNoProcess}
	}
	return []error{e.Err}
}

// permissionAdvice turns EPERM into what the user can change: the other
// tracer by name, root or CAP_SYS_PTRACE, Yama's ptrace_scope.
func permissionAdvice(pid int) string { return proc.PermissionAdvice(pid) }

// Tracer owns the traced threads of one process.
type Tracer struct {
	pid  int
	reqs chan func()
	quit chan struct{}
	once sync.Once
	// ctl is touched only on the tracer thread.
	ctl *Ctl
}

// New starts the tracer goroutine for pid. No thread is traced yet.
func New(pid int) *Tracer {
	t := &Tracer{pid: pid, reqs: make(chan func()), quit: make(chan struct{})}
	t.ctl = &Ctl{pid: pid, threads: map[int]*Thread{}, ignored: map[int]bool{}}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// The thread stays locked and dies with the goroutine: it carries
		// ptrace relationships and possibly a real-time priority that no
		// other goroutine should inherit.
		t.ctl.osTid = unix.Gettid()
		close(ready)
		for {
			select {
			case f := <-t.reqs:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	<-ready
	return t
}

// Pid is the traced process.
func (t *Tracer) Pid() int { return t.pid }

// Do runs f on the tracer thread and returns its error. Every Ctl method
// must be called from inside f.
func (t *Tracer) Do(f func(c *Ctl) error) error {
	errc := make(chan error, 1)
	work := func() {
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("tracer of pid %d: panic: %v", t.pid, r)
			}
		}()
		errc <- f(t.ctl)
	}
	select {
	case t.reqs <- work:
		return <-errc
	case <-t.quit:
		return fmt.Errorf("tracer of pid %d is closed", t.pid)
	}
}

// Close detaches every thread still traced and stops the goroutine.
func (t *Tracer) Close() error {
	var err error
	t.once.Do(func() {
		err = t.Do(func(c *Ctl) error {
			if c.taskDir != nil {
				c.taskDir.Close()
			}
			if c.statFile != nil {
				c.statFile.Close()
			}
			return c.DetachAll()
		})
		close(t.quit)
	})
	return err
}

// Thread is one traced thread.
type Thread struct {
	Tid int
	// Stopped is set while the thread is in a ptrace stop.
	Stopped bool
	// Regs are the registers read when the thread stopped.
	Regs Regs
	// SyscallStop is set while the thread is stopped at a system call
	// entry or exit after ResumeOne(th, true).
	SyscallStop bool
	// pendingSig is a signal that arrived while stopping and must be
	// delivered when the thread resumes.
	pendingSig unix.Signal
}

// Ctl performs ptrace requests; it exists only on the tracer thread.
type Ctl struct {
	pid     int
	osTid   int
	threads map[int]*Thread
	// ignored are threads that cannot be seized and need not be: zombies.
	ignored  map[int]bool
	taskDir  *os.File
	statFile *os.File
	// FirstStop is when the first thread of the current stop was
	// interrupted; LastResume when the last one was resumed.
	FirstStop, LastResume time.Time
}

// Threads returns the traced threads, the main thread last: when the
// process dies, its main thread is reported only after every other thread
// was collected, so waiting for it first would block forever.
func (c *Ctl) Threads() []*Thread {
	ts := make([]*Thread, 0, len(c.threads))
	for _, th := range c.threads {
		ts = append(ts, th)
	}
	sort.Slice(ts, func(i, j int) bool {
		li, lj := ts[i].Tid == c.pid, ts[j].Tid == c.pid
		if li != lj {
			return lj
		}
		return ts[i].Tid < ts[j].Tid
	})
	return ts
}

// Thread returns a traced thread by id.
func (c *Ctl) Thread(tid int) (*Thread, bool) {
	th, ok := c.threads[tid]
	return th, ok
}

// PTRACE_O_TRACESYSGOOD marks system call stops (SIGTRAP|0x80), so that
// they are never mistaken for a trap of the program's own. It also makes
// them harmless should the tool die at one: the kernel then "delivers" the
// stop's code, which is not a valid signal number, instead of SIGTRAP.
const seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACESYSGOOD

func (c *Ctl) seize(tid int) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, seizeOptions, 0, 0)
	if errno != 0 {
		return &Error{Op: "seize", Pid: c.pid, Tid: tid, Err: errno}
	}
	c.threads[tid] = &Thread{Tid: tid}
	return nil
}

// SeizeThread seizes one thread without stopping it.
func (c *Ctl) SeizeThread(tid int) error {
	if _, ok := c.threads[tid]; ok {
		return nil
	}
	return c.seize(tid)
}

// seizeNew seizes every thread of the process not yet traced and reports
// how many it found. A thread that exits meanwhile is skipped.
func (c *Ctl) seizeNew() (int, error) {
	tids, err := c.listTasks()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tid := range tids {
		if _, ok := c.threads[tid]; ok || c.ignored[tid] {
			continue
		}
		if err := c.seize(tid); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			if errors.Is(err, unix.EPERM) && c.notOurs(tid) {
				c.ignored[tid] = true
				continue
			}
			return n, err
		}
		n++
	}
	return n, nil
}

// complete reports whether every thread the kernel counts in the process
// is one we hold stopped or one we ignore (a zombie).
func (c *Ctl) complete() (bool, error) {
	if c.statFile == nil {
		f, err := os.Open(fmt.Sprintf("/proc/%d/stat", c.pid))
		if err != nil {
			return false, fmt.Errorf("count threads of pid %d: %w", c.pid, proc.ErrNoProcess)
		}
		c.statFile = f
	}
	var buf [1024]byte
	n, err := c.statFile.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return false, fmt.Errorf("count threads of pid %d: %w", c.pid, proc.ErrNoProcess)
	}
	count, err := proc.ParseStatThreads(buf[:n])
	if err != nil {
		return false, fmt.Errorf("count threads of pid %d: %w", c.pid, err)
	}
	have := len(c.threads)
	for tid := range c.ignored {
		if st, err := proc.ThreadState(c.pid, tid); err == nil && (st == 'Z' || st == 'X') {
			have++
		} else {
			delete(c.ignored, tid)
		}
	}
	return count <= have, nil
}

// listTasks lists the thread ids of the process through a directory kept
// open: inside a stop, reading it again costs a few microseconds.
func (c *Ctl) listTasks() ([]int, error) {
	if c.taskDir == nil {
		f, err := os.Open(fmt.Sprintf("/proc/%d/task", c.pid))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("list threads of pid %d: process is gone: %w", c.pid, proc.ErrNoProcess)
			}
			return nil, fmt.Errorf("list threads of pid %d: %w", c.pid, err)
		}
		c.taskDir = f
	} else if _, err := c.taskDir.Seek(0, 0); err != nil {
		return nil, fmt.Errorf("list threads of pid %d: %w", c.pid, err)
	}
	names, err := c.taskDir.Readdirnames(-1)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("list threads of pid %d: process is gone: %w", c.pid, proc.ErrNoProcess)
		}
		return nil, fmt.Errorf("list threads of pid %d: %w", c.pid, err)
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// notOurs reports whether a thread that refused to be seized can be left
// alone: a zombie (a main thread that called pthread_exit), or a thread
// that we trace already because a traced thread created it (its clone
// event adds it).
func (c *Ctl) notOurs(tid int) bool {
	if st, err := proc.ThreadState(c.pid, tid); err == nil && (st == 'Z' || st == 'X') {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", c.pid, tid))
	if err != nil {
		return true
	}
	st, err := proc.ParseStatus(b)
	return err == nil && st.TracerPid == c.osTid
}

// SeizeAll seizes every thread of the process without stopping any.
func (c *Ctl) SeizeAll() error {
	for {
		n, err := c.seizeNew()
		if err != nil {
			return err
		}
		if n == 0 {
			if len(c.threads) == 0 {
				return fmt.Errorf("seize pid %d: no threads: %w", c.pid, proc.ErrNoProcess)
			}
			return nil
		}
	}
}

// StopAll stops every thread of the process, seizing threads that are not
// traced yet, including ones created while it runs, and reads their
// registers. When it returns nil, no thread of the process runs.
func (c *Ctl) StopAll() error {
	if err := c.SeizeAll(); err != nil {
		return err
	}
	first := true
	listings := 0
	for {
		var toWait []*Thread
		for _, th := range c.Threads() {
			if th.Stopped {
				continue
			}
			if first {
				c.FirstStop = time.Now()
				first = false
			}
			if err := unix.PtraceInterrupt(th.Tid); err != nil {
				if errors.Is(err, unix.ESRCH) {
					// Exited, or already in a stop we have not
					// collected: the wait below tells which.
				} else {
					return &Error{Op: "interrupt", Pid: c.pid, Tid: th.Tid, Err: err}
				}
			}
			toWait = append(toWait, th)
		}
		if len(toWait) == 0 {
			// Every known thread is stopped, so no clone can be under
			// way: a thread that one of them created while it was being
			// seized (too early to be traced, too late to be listed) is
			// visible now. Seize and stop it too.
			n, err := c.seizeNew()
			if err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			// A listing of /proc/PID/task can skip a thread when another
			// exits during the read, which only threads we have not
			// seized can do. The kernel's count of threads says whether
			// any is left.
			known, err := c.complete()
			if err != nil {
				return err
			}
			if known {
				break
			}
			if listings++; listings > 1000 {
				return fmt.Errorf("stop pid %d: its threads keep changing faster than they can be seized", c.pid)
			}
			continue
		}
		for _, th := range toWait {
			if err := c.waitStopped(th); err != nil {
				return err
			}
		}
	}
	if len(c.threads) == 0 {
		return fmt.Errorf("stop pid %d: every thread exited: %w", c.pid, proc.ErrNoProcess)
	}
	return nil
}

// StopOne stops a single thread (seizing it first if needed).
func (c *Ctl) StopOne(tid int) (*Thread, error) {
	if err := c.SeizeThread(tid); err != nil {
		return nil, err
	}
	th := c.threads[tid]
	if th.Stopped {
		return th, nil
	}
	c.FirstStop = time.Now()
	if err := unix.PtraceInterrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
		return nil, &Error{Op: "interrupt", Pid: c.pid, Tid: tid, Err: err}
	}
	if err := c.waitStopped(th); err != nil {
		return nil, err
	}
	if _, ok := c.threads[tid]; !ok {
		return nil, fmt.Errorf("stop thread %d of pid %d: it exited: %w", tid, c.pid, proc.ErrNoProcess)
	}
	return th, nil
}

// waitStopped waits until th is in a ptrace stop and reads its registers.
// Threads announced by clone events are added and waited for as well.
func (c *Ctl) waitStopped(th *Thread) error {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(th.Tid, &ws, unix.WALL, nil)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.ECHILD) {
				delete(c.threads, th.Tid)
				return nil
			}
			return &Error{Op: "wait for", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		done, err := c.handleStatus(th, ws)
		if done || err != nil {
			return err
		}
	}
}

// Poll collects a stop of th, a thread that was resumed, without
// blocking: it reports whether th stopped (or exited, in which case it is
// no longer among the threads). Threads a clone event announces are added,
// stopped.
func (c *Ctl) Poll(th *Thread) (bool, error) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(th.Tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.ECHILD) {
				delete(c.threads, th.Tid)
				return true, nil
			}
			return false, &Error{Op: "wait for", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		if pid == 0 {
			return false, nil
		}
		done, err := c.handleStatus(th, ws)
		if err != nil {
			return false, err
		}
		if done {
			return true, nil
		}
	}
}

// syscallStop is the stop signal of a system call stop under
// PTRACE_O_TRACESYSGOOD.
const syscallStop = unix.SIGTRAP | 0x80

// handleStatus records a wait status of th; it reports whether th is now
// stopped (registers read) or gone.
func (c *Ctl) handleStatus(th *Thread, ws unix.WaitStatus) (bool, error) {
	if ws.Exited() || ws.Signaled() {
		delete(c.threads, th.Tid)
		return true, nil
	}
	if !ws.Stopped() {
		return false, nil
	}
	th.Stopped = true
	th.SyscallStop = false
	sig := ws.StopSignal()
	switch event := ws.TrapCause(); {
	case event == unix.PTRACE_EVENT_CLONE:
		msg, err := unix.PtraceGetEventMsg(th.Tid)
		if err != nil {
			return false, &Error{Op: "read clone event of", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		child := &Thread{Tid: int(msg)}
		c.threads[child.Tid] = child
		// The new thread starts in a ptrace stop of its own.
		if err := c.waitStopped(child); err != nil {
			return false, err
		}
	case event == unix.PTRACE_EVENT_STOP || event > 0:
		// The interrupt (or a group stop): nothing to deliver.
	case sig == syscallStop:
		// Only a thread resumed with ResumeOne(th, true) stops here;
		// there is nothing to deliver.
		th.SyscallStop = true
		if err := c.getRegs(th); err != nil {
			return false, err
		}
		return true, nil
	case sig == unix.SIGTRAP:
		// A trap the thread took on its own (a breakpoint the
		// program uses, say) must still reach it.
		th.pendingSig = sig
	default:
		// A signal arrived before the interrupt was seen; hold it
		// and deliver it on resume, so the program never loses it.
		th.pendingSig = sig
	}
	if err := c.getRegs(th); err != nil {
		return false, err
	}
	return true, c.undoStopEINTR(th)
}

// ResumeOne lets one stopped thread run on, still traced, delivering a
// signal it stopped with. With syscalls it stops again at its next system
// call entry or exit (PTRACE_SYSCALL), where Poll sees SyscallStop set.
func (c *Ctl) ResumeOne(th *Thread, syscalls bool) error {
	if !th.Stopped {
		return nil
	}
	req := unix.PTRACE_CONT
	if syscalls {
		req = unix.PTRACE_SYSCALL
	}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(th.Tid), 0, uintptr(th.pendingSig), 0, 0)
	if errno != 0 && errno != unix.ESRCH {
		return &Error{Op: "resume", Pid: c.pid, Tid: th.Tid, Err: errno}
	}
	th.Stopped, th.pendingSig, th.SyscallStop = false, 0, false
	return nil
}

// undoStopEINTR rewinds a system call that failed with EINTR only because
// of our stop, so that the program never sees it.
func (c *Ctl) undoStopEINTR(th *Thread) error {
	if _, ok := c.threads[th.Tid]; !ok || th.pendingSig != 0 || !th.Regs.interruptedByStop() {
		return nil
	}
	if signalPending(c.pid, th.Tid) {
		return nil
	}
	th.Regs.rewindSyscall()
	return c.SetRegs(th, &th.Regs)
}

func (c *Ctl) getRegs(th *Thread) error {
	if err := unix.PtraceGetRegs(th.Tid, &th.Regs.raw); err != nil {
		if errors.Is(err, unix.ESRCH) {
			delete(c.threads, th.Tid)
			return nil
		}
		return &Error{Op: "read registers of", Pid: c.pid, Tid: th.Tid, Err: err}
	}
	return nil
}

// SetRegs writes registers of a stopped thread.
func (c *Ctl) SetRegs(th *Thread, r *Regs) error {
	if err := unix.PtraceSetRegs(th.Tid, &r.raw); err != nil {
		return &Error{Op: "write registers of", Pid: c.pid, Tid: th.Tid, Err: err}
	}
	return nil
}

// ResumeAll lets every stopped thread run again, still traced.
func (c *Ctl) ResumeAll() error {
	var firstErr error
	for _, th := range c.Threads() {
		if !th.Stopped {
			continue
		}
		if err := unix.PtraceCont(th.Tid, int(th.pendingSig)); err != nil && !errors.Is(err, unix.ESRCH) && firstErr == nil {
			firstErr = &Error{Op: "resume", Pid: c.pid, Tid: th.Tid, Err: err}
		}
		th.Stopped, th.pendingSig, th.SyscallStop = false, 0, false
	}
	c.LastResume = time.Now()
	return firstErr
}

// DetachAll releases every traced thread; stopped threads resume. A thread
// that is running is stopped first, since the kernel detaches only
// stopped tracees.
func (c *Ctl) DetachAll() error {
	var firstErr error
	for _, th := range c.Threads() {
		if th.Stopped && th.SyscallStop {
			if err := c.leaveSyscallStop(th); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if _, ok := c.threads[th.Tid]; !ok {
			continue
		}
		if !th.Stopped {
			if err := unix.PtraceInterrupt(th.Tid); err == nil {
				_ = c.waitStopped(th)
			}
			if _, ok := c.threads[th.Tid]; !ok {
				continue
			}
		}
		_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.Tid), 0, uintptr(th.pendingSig), 0, 0)
		if errno != 0 && errno != unix.ESRCH && firstErr == nil {
			firstErr = &Error{Op: "detach", Pid: c.pid, Tid: th.Tid, Err: errno}
		}
		delete(c.threads, th.Tid)
	}
	c.LastResume = time.Now()
	return firstErr
}

// leaveSyscallStop turns a system call stop into an interrupt stop. A
// thread detached at a system call entry stop starts the call with a
// signal marked pending by the detach itself, and calls that do not
// restart (epoll_wait) then fail with EINTR; from an interrupt stop, the
// call is rewound (undoStopEINTR) and restarts transparently.
func (c *Ctl) leaveSyscallStop(th *Thread) error {
	if err := unix.PtraceCont(th.Tid, int(th.pendingSig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return &Error{Op: "resume", Pid: c.pid, Tid: th.Tid, Err: err}
	}
	th.Stopped, th.pendingSig, th.SyscallStop = false, 0, false
	if err := unix.PtraceInterrupt(th.Tid); err != nil && !errors.Is(err, unix.ESRCH) {
		return &Error{Op: "interrupt", Pid: c.pid, Tid: th.Tid, Err: err}
	}
	return c.waitStopped(th)
}

// Detach releases one stopped thread.
func (c *Ctl) Detach(th *Thread) error {
	if th.Stopped && th.SyscallStop {
		if err := c.leaveSyscallStop(th); err != nil {
			return err
		}
		if _, ok := c.threads[th.Tid]; !ok {
			return nil
		}
	}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.Tid), 0, uintptr(th.pendingSig), 0, 0)
	delete(c.threads, th.Tid)
	c.LastResume = time.Now()
	if errno != 0 && errno != unix.ESRCH {
		return &Error{Op: "detach", Pid: c.pid, Tid: th.Tid, Err: errno}
	}
	return nil
}

// Realtime raises the tracer thread to SCHED_FIFO, where permitted, and
// returns a function that restores the previous policy. Threads of the
// target that spin on the CPU can otherwise preempt the tracer halfway
// through resuming them and stretch a sub-millisecond pause to tens of
// milliseconds. Failure to raise is not an error: the pause is only longer.
func (c *Ctl) Realtime() (restore func()) {
	old, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return func() {}
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return func() {}
	}
	return func() { _ = unix.SchedSetAttr(0, old, 0) }
}

// BesideThread runs the tracer thread on the CPU where thread tid last
// ran, and returns a function that restores its affinity. Each injected
// system call is a round trip between tracer and tracee; on one CPU that
// is a local context switch instead of a cross-CPU wake-up, which on
// virtual machines costs tens of microseconds each way. Call it before
// stopping the thread, so that the migration is not part of the stop, and
// together with Realtime, so that the tracer does not queue behind the
// threads that run on that CPU.
func (c *Ctl) BesideThread(tid int) (restore func()) {
	cpu, err := proc.LastCPU(c.pid, tid)
	if err != nil {
		return func() {}
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil || !old.IsSet(cpu) {
		return func() {}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return func() {}
	}
	return func() { _ = unix.SchedSetaffinity(0, &old) }
}
