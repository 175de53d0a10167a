package patcher

import (
	"errors"
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// Errors callers can test for.
var (
	// ErrNoTarget: no object loaded in the process has the patch's
	// build-id.
	ErrNoTarget = errors.New("no loaded object has the patch's build-id")
	// ErrNotPatched: unpatch found nothing to remove.
	ErrNotPatched = errors.New("no patch applied")
	// ErrDependency: another patch is stacked on the one to remove.
	ErrDependency = errors.New("another patch depends on it")
	// ErrLevel: a higher level of the same patch is already applied.
	ErrLevel = errors.New("a higher level of the patch is applied")
	// ErrTooShort: a function is shorter than the jump and no padding
	// follows it.
	ErrTooShort = errors.New("function is shorter than the jump")
)

// Options tune Apply and Unpatch.
type Options struct {
	// Retries bounds how often the safety check is retried while a
	// thread is inside a function being replaced; Timeout bounds the
	// time spent retrying. The first bound reached ends the retries.
	Retries int
	Timeout time.Duration
	// fault, set only by tests, is called at named points of an apply
	// and makes it fail there, to exercise the rollback.
	fault func(point string) error
}

func (o *Options) hit(point string) error {
	if o.fault != nil {
		return o.fault(point)
	}
	return nil
}

// Status of one patch in a result.
const (
	StatusApplied        = "applied"
	StatusAlreadyApplied = "already-applied"
	StatusReplaced       = "replaced"
	StatusRemoved        = "removed"
)

// PatchResult describes what happened to one patch.
type PatchResult struct {
	ID        string   `json:"id"`
	Level     uint32   `json:"level"`
	BuildID   string   `json:"build_id"`
	Object    string   `json:"object"`
	Status    string   `json:"status"`
	Functions []string `json:"functions,omitempty"`
	// ReplacedLevel is the level a replace-by-level removed.
	ReplacedLevel uint32 `json:"replaced_level,omitempty"`
	Base          uint64 `json:"base,omitempty"`
}

// Result is the outcome for one process.
type Result struct {
	Pid int `json:"pid"`
	// PauseUS is the stop of every thread: from the first thread stopped
	// to the last resumed.
	PauseUS int64 `json:"pause_us"`
	// ThreadStopUS is the longest stop of a single thread outside that
	// pause: the one that maps (or unmaps) a region by injected system
	// calls while the others run. A single-threaded program sees it as
	// a pause of its own.
	ThreadStopUS int64         `json:"thread_stop_us"`
	Retries      int           `json:"retries"`
	Patches      []PatchResult `json:"patches"`
}

// plan is one patch prepared for one process.
type plan struct {
	l        *linked
	hdr      *regionHeader
	replaces *Region
	jumps    []jumpWrite
}

// jumpWrite is a write of the pause: new bytes at an address, and the
// bytes they replace (for rollback).
type jumpWrite struct {
	addr     uint64
	new, old []byte
}

// session is the state of one operation on one process.
type session struct {
	p       *Process
	a       *arch.Arch
	opt     Options
	tr      *ptrace.Tracer
	mem     *proc.Mem
	insn    uint64
	regions []*Region
	// mapped are regions this operation mapped, to unmap on failure.
	mapped [][2]uint64
	// frames are call frame registrations to withdraw before unmapping.
	frames []frameReg
	// threadStop is the longest single-thread stop so far.
	threadStop time.Duration
	// sigCaught are the signals the program handles (see markerSignal).
	sigCaught uint64
	// resolved maps ifunc resolvers called in the process to their
	// results.
	resolved map[uint64]uint64
	// held: the caller's tracer holds the process stopped (ApplyHeld);
	// a stopped thread stays stopped until the pause releases them all.
	held bool
}

// noteThreadStop records the length of the single-thread stop that just
// ended.
func (s *session) noteThreadStop() {
	_ = s.tr.Do(func(c *ptrace.Ctl) error {
		if d := c.LastResume.Sub(c.FirstStop); d > s.threadStop && d < time.Minute {
			s.threadStop = d
		}
		return nil
	})
}

func newSession(pid int, opt Options) (*session, error) {
	if err := checkNotTraced(pid); err != nil {
		return nil, err
	}
	p, err := Inspect(pid)
	if err != nil {
		return nil, err
	}
	a, err := arch.ForMachine(p.Objects[0].File.Machine)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	regions, err := FindRegions(p.MemPid, p.Maps)
	if err != nil {
		return nil, err
	}
	return &session{p: p, a: a, opt: opt, regions: regions}, nil
}

func (s *session) open() error {
	mem, err := proc.OpenMem(s.p.MemPid)
	if err != nil {
		return err
	}
	insn, err := ptrace.FindSyscallInsn(s.p.MemPid, s.a, s.p.Maps)
	if err != nil {
		mem.Close()
		return err
	}
	s.mem, s.insn = mem, insn
	s.tr = ptrace.New(s.p.Pid)
	return nil
}

func (s *session) close() {
	if s.tr != nil {
		_ = s.tr.Close()
	}
	if s.mem != nil {
		s.mem.Close()
	}
}

// Apply applies patches to process pid: each patch goes to the loaded
// object with its build-id. Either all of them are applied or, after any
// failure, the process is restored as it was.
func Apply(pid int, patches []*patchfile.Patch, opt Options) (*Result, error) {
	unlock, err := lockProcess(pid, opt)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, err := newSession(pid, opt)
	if err != nil {
		return nil, err
	}
	if err := s.dropIncomplete(); err != nil {
		return nil, err
	}
	res := &Result{Pid: pid}
	defer s.close()
	plans, err := s.planResolving(patches, res)
	if err != nil {
		return res, err
	}
	if len(plans) == 0 {
		return res, nil
	}
	if s.tr == nil {
		if err := s.open(); err != nil {
			return res, err
		}
	}
	if err := s.apply(plans, res); err != nil {
		return res, err
	}
	return res, nil
}
