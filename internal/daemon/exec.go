package daemon

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Patches before main.
//
// The exec watch marks the mounts of the ExecWatch paths with fanotify
// for FAN_OPEN_EXEC_PERM: the kernel holds every execve of a file on
// those mounts until the daemon answers. Ordinary opens raise no event,
// and neither do execs elsewhere. While it holds the exec, the daemon
// decides from the file alone whether the program needs patches (its
// build-id, or a library patch whose object the program names in
// DT_NEEDED) and whether the process is in scope; if so it seizes the
// process with PTRACE_O_TRACEEXEC. Then it answers, always FAN_ALLOW,
// on every path, panics included: an unanswered event hangs the exec.
// (If the daemon dies, the kernel answers its pending events itself.)
//
// The seized process stops after its exec, before its first instruction.
// The daemon plants a trap at its entry point (AT_ENTRY), lets it run:
// the dynamic linker maps the libraries, relocates them and runs their
// constructors, and the program traps at its entry, before its own
// constructors and main. The trap is removed, the patches are applied
// with the tracer the daemon holds (patcher.ApplyHeld), and the program
// is released.

const (
	execWaitTimeout  = 5 * time.Second
	entryRunTimeout  = 10 * time.Second
	fanMetadataLen   = 24
	fanResponseLen   = 8
	fanotifyEventBuf = 64 << 10
)

type execWatch struct {
	f    *os.File
	mu   sync.Mutex // serialises responses
	done chan struct{}
}

// watchExec marks the file systems of paths and starts answering their
// exec permission events. A file system mark, unlike a mount mark, sees
// executions from every mount namespace: the systemd unit's sandbox and a
// pod give the daemon a namespace of its own, where a mount mark would see
// nothing that other programs start.
func (d *Daemon) watchExec(paths []string) (*execWatch, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch executions: fanotify_init: %w (needs CAP_SYS_ADMIN; without --exec-watch new programs are patched when the scan finds them, after main started)", err)
	}
	marked := 0
	for _, p := range paths {
		err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("watch executions on the file system of %s: %w (FAN_OPEN_EXEC_PERM needs Linux 5.0 with CONFIG_FANOTIFY_ACCESS_PERMISSIONS)", p, err)
		}
		marked++
	}
	if marked == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("watch executions: none of %s exists", strings.Join(paths, ", "))
	}
	w := &execWatch{f: os.NewFile(uintptr(fd), "fanotify"), done: make(chan struct{})}
	go d.readExecEvents(w)
	return w, nil
}

// close stops the watch. The kernel allows every event still pending
// when the group's file is released.
func (w *execWatch) close() {
	w.f.Close()
	<-w.done
}

type execEvent struct {
	fd  int
	pid int
	at  time.Time
}

func (d *Daemon) readExecEvents(w *execWatch) {
	defer close(w.done)
	buf := make([]byte, fanotifyEventBuf)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				d.report(slog.LevelError, "exec watch stopped", "err", err)
			}
			return
		}
		at := time.Now()
		for off := 0; off+fanMetadataLen <= n; {
			evLen := int(binary.NativeEndian.Uint32(buf[off:]))
			if evLen < fanMetadataLen || off+evLen > n {
				break
			}
			ev := execEvent{
				fd:  int(int32(binary.NativeEndian.Uint32(buf[off+16:]))),
				pid: int(int32(binary.NativeEndian.Uint32(buf[off+20:]))),
				at:  at,
			}
			if buf[off+4] != unix.FANOTIFY_METADATA_VERSION {
				d.report(slog.LevelError, "exec watch: unknown fanotify metadata version", "version", buf[off+4])
			}
			d.handleExec(w, ev)
			off += evLen
		}
	}
}

// handleExec answers one permission event, after seizing the process
// when it needs patches.
func (d *Daemon) handleExec(w *execWatch, ev execEvent) {
	if ev.fd < 0 {
		return // a queue overflow carries no file and wants no answer
	}
	defer func() {
		if r := recover(); r != nil {
			d.report(slog.LevelError, "exec watch: internal error; the exec was allowed", "pid", ev.pid, "panic", fmt.Sprint(r))
		}
		w.allow(ev.fd)
		unix.Close(ev.fd)
	}()
	d.maybeSeize(ev)
}

func (w *execWatch) allow(fd int) {
	var b [fanResponseLen]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(int32(fd)))
	binary.NativeEndian.PutUint32(b[4:], unix.FAN_ALLOW)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.f.Write(b[:])
}

// execFile is what the daemon needs to know of an executable to decide.
type execFile struct {
	buildID string
	machine elf.Machine
	needed  []string
	err     error
}

var execFiles = struct {
	sync.Mutex
	m map[string]*execFile
}{m: map[string]*execFile{}}

type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(r), p, off)
	if err != nil {
		return max(n, 0), err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readExecFile reads the build-id and DT_NEEDED of the file being
// executed, cached by device, inode, size and modification time.
func readExecFile(fd int) *execFile {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &execFile{err: err}
	}
	key := fmt.Sprintf("%d:%d:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	execFiles.Lock()
	ef, ok := execFiles.m[key]
	execFiles.Unlock()
	if ok {
		return ef
	}
	ef = &execFile{}
	f, err := elf.NewFile(fdReader(fd))
	if err != nil {
		ef.err = err // a script: its interpreter's exec is the one that counts
	} else {
		ef.machine = f.Machine
		if id, err := elfobj.BuildID(f); err == nil {
			ef.buildID = hexID(id)
		}
		ef.needed, _ = f.ImportedLibraries()
	}
	execFiles.Lock()
	execFiles.m[key] = ef
	execFiles.Unlock()
	return ef
}

// soStem cuts a library name after ".so": libgreet.so.1 and libgreet.so
// name the same library.
func soStem(name string) string {
	if i := strings.Index(name, ".so"); i >= 0 {
		return name[:i+3]
	}
	return name
}

// needsPatches reports whether a program may load an object with an
// active patch: its own build-id, or a library it names in DT_NEEDED,
// matched by name (libraries are found by the dynamic linker only after
// the exec). Libraries it loads indirectly or by dlopen are patched by
// the scan once loaded. Called with d.mu held.
func (d *Daemon) needsPatches(ef *execFile) bool {
	for _, sp := range d.patches {
		if !sp.active() {
			continue
		}
		if sp.buildID == ef.buildID {
			return true
		}
		stem := soStem(sp.patch.Target)
		for _, n := range ef.needed {
			if soStem(n) == stem {
				return true
			}
		}
	}
	return false
}

// lockWithin takes d.mu unless that takes longer than the exec watch may
// hold an exec for. Every exec on a watched mount waits for the daemon's
// answer; a program that finds the daemon busy is let go unpatched and
// patched by the scan instead.
func (d *Daemon) lockWithin(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !d.mu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

const execLockLimit = 100 * time.Millisecond

func (d *Daemon) maybeSeize(ev execEvent) {
	if d.active.Load() == 0 || ev.pid == d.self {
		return
	}
	if !d.lockWithin(execLockLimit) {
		d.report(slog.LevelWarn, "exec watch: daemon busy; the program will be patched after it started", "pid", ev.pid)
		return
	}
	id, err := proc.ReadIdentity(ev.pid)
	if err != nil || !d.scope.contains(ev.pid, id) {
		d.mu.Unlock()
		return
	}
	if st := d.procs[ev.pid]; st != nil && (st.busy || st.inexec) {
		// Held already (this is its dynamic linker's open), or a worker
		// is patching the old program: the scan takes it from there.
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	ef := readExecFile(ev.fd)
	if ef.err != nil {
		return
	}
	if !d.lockWithin(execLockLimit) {
		d.report(slog.LevelWarn, "exec watch: daemon busy; the program will be patched after it started", "pid", ev.pid)
		return
	}
	if !d.needsPatches(ef) {
		d.mu.Unlock()
		return
	}
	st := d.procs[ev.pid]
	if st == nil || st.id.StartTime != id.StartTime {
		st = &procState{pid: ev.pid, id: id, failed: map[string]*failure{}}
		d.procs[ev.pid] = st
	} else if st.busy || st.inexec {
		d.mu.Unlock()
		return
	}
	st.inexec = true
	d.jobs.Add(1)
	d.mu.Unlock()
	tr := ptrace.New(ev.pid)
	if err := tr.Do(func(c *ptrace.Ctl) error { return c.SeizeForExec(ev.pid) }); err != nil {
		tr.Close()
		d.report(slog.LevelWarn, "exec watch: cannot seize; it will be patched after it started", "pid", ev.pid, "err", err)
		d.endExec(st)
		return
	}
	go d.finishExec(tr, st, ef, ev.at)
}

func (d *Daemon) endExec(st *procState) {
	d.mu.Lock()
	st.inexec, st.stale = false, true
	d.mu.Unlock()
	d.jobs.Done()
	d.poke()
}

// finishExec takes a seized process through its exec to its entry point,
// applies its patches there and releases it.
func (d *Daemon) finishExec(tr *ptrace.Tracer, st *procState, ef *execFile, since time.Time) {
	defer d.endExec(st)
	a, err := arch.ForMachine(ef.machine)
	if err != nil {
		tr.Close()
		return
	}
	err = tr.Do(func(c *ptrace.Ctl) error {
		th, err := c.WaitExec(st.pid, execWaitTimeout)
		if err != nil {
			return err
		}
		auxv, err := proc.Auxv(st.pid)
		if err != nil {
			return err
		}
		entry, ok := auxv[proc.AtEntry]
		if !ok {
			return fmt.Errorf("pid %d: no AT_ENTRY in its auxiliary vector", st.pid)
		}
		return c.RunToEntry(th, entry, a.Trap, entryRunTimeout)
	})
	if err != nil {
		tr.Close()
		if !errors.Is(err, ptrace.ErrNoExec) {
			d.report(slog.LevelWarn, "exec watch: could not stop the program at its entry point; it will be patched after it started", "pid", st.pid, "err", err)
		}
		return
	}
	d.mu.Lock()
	if err := d.readProcess(st); err != nil {
		d.mu.Unlock()
		tr.Close()
		return
	}
	var patches []*patchfile.Patch
	var files []string
	for _, w := range d.wants(st.objects) {
		patches = append(patches, d.patches[w.file].patch)
		files = append(files, w.file)
	}
	d.mu.Unlock()
	if len(patches) == 0 {
		tr.Close()
		return
	}
	res, err := patcher.ApplyHeld(tr, patches, d.opt.Patcher)
	held := time.Since(since)
	// What the program carries now; a short-lived one may be gone.
	sn, snErr := d.readSnapshot(st.pid, "", true)
	d.mu.Lock()
	defer d.mu.Unlock()
	if snErr != nil {
		delete(d.procs, st.pid)
	} else {
		st.take(sn)
	}
	for _, f := range files {
		if err == nil {
			delete(st.failed, f)
			continue
		}
		fl := st.failed[f]
		if fl == nil {
			fl = &failure{}
			st.failed[f] = fl
		}
		fl.attempts++
		fl.err = oneLine(err)
		fl.next = time.Now().Add(backoff(fl.attempts))
	}
	if err != nil {
		d.report(slog.LevelWarn, "patch before main failed; retried after it started", "pid", st.pid, "err", err)
		return
	}
	d.report(slog.LevelInfo, "patched before main", "pid", st.pid, "exe", st.exe, "patches", strings.Join(files, ","),
		"pause_us", res.PauseUS, "startup_delay_us", held.Microseconds())
}
