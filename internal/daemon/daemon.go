// Package daemon keeps the processes of a host in the state a patch store
// describes. Every .hpatch file in the store is applied to every process
// that loads its object (executable or library); a file added is applied,
// a file removed is unpatched, a higher level replaces a lower one. What
// is applied is read back from the processes themselves (the region
// headers the patcher leaves in them), so a restarted daemon carries on
// where the last one stopped. Programs started later are caught at their
// exec and patched before their first instruction of main (exec.go).
//
// One loop owns the picture of the store and the processes and decides
// what to do; the work on each process runs in its own goroutine, a
// bounded number at a time, so that one stuck process never holds up the
// others. A failure is retried with back-off and shown by status.
package daemon

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// Defaults of the command line and of the packaged unit.
const (
	DefaultStore  = "/var/lib/hotpatch/patches"
	DefaultSocket = "/run/hotpatch.sock"
)

// Signature states of a patch in the status document.
const (
	SignatureVerified    = "verified"
	SignatureUnsigned    = "unsigned"
	SignatureUntrusted   = "untrusted"
	SignatureInvalid     = "invalid"
	SignatureNotRequired = "not-required"
)

// OpenFunc opens one store file and checks it against the host's policy.
// It returns the patch and the signature state for status; an error
// rejects the file (the state says why it was rejected, when it was the
// signature).
type OpenFunc func(path string) (*patchfile.Patch, string, error)

// OpenUnchecked is the OpenFunc used until a host policy is wired in: it
// decodes the file (format and checksum) and verifies no signature.
func OpenUnchecked(path string) (*patchfile.Patch, string, error) {
	p, err := patchfile.ReadFile(path)
	if err != nil {
		return nil, SignatureNotRequired, err
	}
	return p, SignatureNotRequired, nil
}

// Event is something the daemon did or failed to do, for the log. The
// daemon does not log itself; the command layer does.
type Event struct {
	Level slog.Level
	Msg   string
	Attrs []any
}

// Options configure a daemon.
type Options struct {
	Store  string
	Socket string
	// Open opens a store file; OpenUnchecked when nil. This is where the
	// host's signature policy plugs in.
	Open OpenFunc
	// Tree, when not zero, confines the daemon to pid Tree and the
	// processes descended from it: tests, and a daemon that looks after
	// one service only. Zero means every process on the host.
	Tree int
	// ExecWatch are paths whose mounts are watched for executions
	// (fanotify), so that programs started from them are patched before
	// main. Empty: no exec watch, new programs are patched when the scan
	// finds them.
	ExecWatch []string
	// Interval is the period of the store and process scan.
	Interval time.Duration
	// Workers bounds the processes worked on at once.
	Workers int
	// Patcher bounds the retries of one attempt on one process; the
	// daemon's own back-off retries the attempt.
	Patcher patcher.Options
	// Version is reported by status.
	Version string
	// Report receives events for the log; nil discards them.
	Report func(Event)
}

// Daemon is a running daemon.
type Daemon struct {
	opt     Options
	self    int
	started time.Time

	mu      sync.Mutex
	patches map[string]*storePatch // by file name
	procs   map[int]*procState
	scope   *scope
	ids     *buildIDCache
	// active counts the active store files, so that an exec on a host
	// with an empty store is answered without taking the lock.
	active atomic.Int32
	// ticks counts scans.
	ticks int
	sem   chan struct{}
	wake  chan struct{}
	// storeWake asks for a read of the store alone.
	storeWake chan struct{}
	jobs      sync.WaitGroup
	// ready is closed after the first scan, for status callers that
	// start right after the daemon.
	ready chan struct{}
}

// New checks the options and prepares a daemon; Run starts it.
func New(opt Options) (*Daemon, error) {
	if opt.Store == "" {
		opt.Store = DefaultStore
	}
	if opt.Socket == "" {
		opt.Socket = DefaultSocket
	}
	if opt.Open == nil {
		opt.Open = OpenUnchecked
	}
	if opt.Interval <= 0 {
		opt.Interval = 500 * time.Millisecond
	}
	if opt.Workers <= 0 {
		opt.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if opt.Patcher.Retries == 0 && opt.Patcher.Timeout == 0 {
		opt.Patcher = patcher.Options{Retries: 5, Timeout: 300 * time.Millisecond}
	}
	st, err := os.Stat(opt.Store)
	if err != nil {
		return nil, fmt.Errorf("patch store %s: %w; create it (mkdir -p %s) or pass --store", opt.Store, err, opt.Store)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("patch store %s is not a directory", opt.Store)
	}
	return &Daemon{
		opt: opt, self: os.Getpid(), started: time.Now().UTC(),
		patches: map[string]*storePatch{}, procs: map[int]*procState{},
		scope: newScope(opt.Tree, os.Getpid()), ids: newBuildIDCache(),
		sem: make(chan struct{}, opt.Workers), wake: make(chan struct{}, 1),
		storeWake: make(chan struct{}, 1),
		ready:     make(chan struct{}),
	}, nil
}

func (d *Daemon) report(level slog.Level, msg string, attrs ...any) {
	if d.opt.Report != nil {
		d.opt.Report(Event{Level: level, Msg: msg, Attrs: attrs})
	}
}

// Run serves the status socket, watches executions and keeps the
// processes in line with the store until ctx ends. Work under way on a
// process is finished, never abandoned halfway, before Run returns.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := listen(d.opt.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	go d.serve(ln)
	stopWatch, err := d.watchStore()
	if err != nil {
		return err
	}
	defer stopWatch()
	if len(d.opt.ExecWatch) > 0 {
		w, err := d.watchExec(d.opt.ExecWatch)
		if err != nil {
			return err
		}
		defer w.close()
	}
	tick := time.NewTicker(d.opt.Interval)
	defer tick.Stop()
	d.scan()
	close(d.ready)
	// A change in the store is acted on at once, even while a scan of a
	// thousand processes is under way.
	storeDone := make(chan struct{})
	go func() {
		defer close(storeDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.storeWake:
				d.storeChanged()
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			<-storeDone
			d.jobs.Wait()
			return nil
		case <-tick.C:
			d.scan()
		case <-d.wake:
			d.scan()
		}
	}
}

// poke asks for a scan now instead of at the next tick.
func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// pokeStore asks for the store to be read now. What the processes carry
// is known from the last scan, so the work starts without reading /proc.
func (d *Daemon) pokeStore() {
	select {
	case d.storeWake <- struct{}{}:
	default:
	}
}

func (d *Daemon) storeChanged() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scanStore() {
		d.dispatch(time.Now())
	}
}

// storePatch is one file of the store.
type storePatch struct {
	file    string
	modTime time.Time
	size    int64
	patch   *patchfile.Patch
	buildID string
	sig     string
	// reason is set when the file is rejected.
	reason string
}

func (sp *storePatch) active() bool { return sp.reason == "" }

// want is a patch a process should carry.
type want struct {
	file    string
	id      string
	buildID string
	level   uint32
}

// backoff is the wait before attempt n+1 after n failures.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// oneLine keeps status reasons to one line.
func oneLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
