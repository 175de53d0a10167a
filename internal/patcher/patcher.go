package patcher

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"github.com/hotpatch/hotpatch/internal/version"
	"golang.org/x/sys/unix"
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
	// threadStop is the longest single-thread stop so far.
	threadStop time.Duration
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
	s, err := newSession(pid, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{Pid: pid}
	plans, err := s.plan(patches, res)
	if err != nil {
		return res, err
	}
	if len(plans) == 0 {
		return res, nil
	}
	if err := s.open(); err != nil {
		return res, err
	}
	defer s.close()
	if err := s.apply(plans, res); err != nil {
		return res, err
	}
	return res, nil
}

// plan prepares every patch outside any stop: resolve, place, relocate.
func (s *session) plan(patches []*patchfile.Patch, res *Result) ([]*plan, error) {
	// What each old entry currently holds: the top patch region's jump,
	// or nothing (the original code).
	top := map[uint64]*regionHeader{}
	var seq uint64
	for _, r := range s.regions {
		seq = max(seq, r.hdr.Seq)
		for _, f := range r.hdr.Funcs {
			if !f.RangeOnly {
				top[f.Old] = r.hdr
			}
		}
	}
	pending := map[uint64][]byte{}
	var taken [][2]uint64
	var plans []*plan
	for _, patch := range patches {
		if err := patch.Validate(); err != nil {
			return nil, err
		}
		if patch.Arch != s.a.Machine {
			return nil, fmt.Errorf("patch %s is for %v, pid %d runs %v", patch.ID, patch.Arch, s.p.Pid, s.a.Machine)
		}
		obj := s.p.ObjectByBuildID(patch.BuildID)
		if obj == nil {
			return nil, fmt.Errorf("patch %s (for %s, build-id %s): %w in pid %d; the process runs another build", patch.ID, patch.Target, patch.BuildIDString(), ErrNoTarget, s.p.Pid)
		}
		pr := PatchResult{ID: patch.ID, Level: patch.Level, BuildID: patch.BuildIDString(), Object: obj.Path}
		var replaces *Region
		for _, r := range s.regions {
			if r.hdr.ID != patch.ID || r.hdr.BuildID != patch.BuildIDString() {
				continue
			}
			switch {
			case r.hdr.Level == patch.Level:
				pr.Status = StatusAlreadyApplied
				pr.Functions = r.Functions()
				pr.Base = r.hdr.Base
			case r.hdr.Level > patch.Level:
				return nil, fmt.Errorf("patch %s level %d in pid %d: level %d is applied: %w", patch.ID, patch.Level, s.p.Pid, r.hdr.Level, ErrLevel)
			default:
				replaces = r
			}
		}
		if pr.Status == StatusAlreadyApplied {
			res.Patches = append(res.Patches, pr)
			continue
		}
		l, err := s.link(patch, obj, taken)
		if err != nil {
			return nil, err
		}
		taken = append(taken, [2]uint64{l.base - pageSize, l.base + l.size + pageSize})
		seq++
		hdr := &regionHeader{ID: patch.ID, Level: patch.Level, BuildID: patch.BuildIDString(), Target: obj.Path,
			Bias: obj.Bias, Base: l.base, Size: l.size, Seq: seq, Tool: version.Version, Parts: l.parts,
			TextStart: l.textStart, TextEnd: l.textEnd, EHFrameAddr: l.ehAddr, EHFrameSize: l.ehSize}
		pl := &plan{l: l, hdr: hdr, replaces: replaces}
		covered := map[uint64]bool{}
		for _, f := range l.funcs {
			if f.RangeOnly {
				hdr.Funcs = append(hdr.Funcs, f)
				continue
			}
			if _, inBatch := pending[f.Old]; top[f.Old] == nil && !inBatch {
				// Checked once, by the first patch of the function: its
				// entry now holds a jump.
				if err := s.checkRoom(obj, f); err != nil {
					return nil, fmt.Errorf("patch %s: %w", patch.ID, err)
				}
			}
			jump, ok := s.a.EncodeJump(f.Old, f.New)
			if !ok {
				return nil, fmt.Errorf("patch %s: function %s: the new code at %#x is out of jump reach of %#x", patch.ID, f.Name, f.New, f.Old)
			}
			cur, inBatch := pending[f.Old]
			below := top[f.Old]
			switch {
			case replaces != nil && below == replaces.hdr:
				// Replace-by-level: take over what the old level saved.
				for _, of := range replaces.hdr.Funcs {
					if of.Old == f.Old && !of.RangeOnly {
						f.Saved, f.Prev = of.Saved, of.Prev
					}
				}
				cur = nil
			case inBatch:
				f.Saved = cur
			default:
				f.Saved = make([]byte, s.a.JumpSize)
				if err := proc.ReadMem(s.p.MemPid, f.Old, f.Saved); err != nil {
					return nil, fmt.Errorf("patch %s: read the entry of %s: %w", patch.ID, f.Name, err)
				}
			}
			if below != nil && (replaces == nil || below != replaces.hdr) {
				f.Prev = below.Base
			}
			old := f.Saved
			if inBatch {
				old = cur
			} else if replaces != nil && below == replaces.hdr {
				old = make([]byte, s.a.JumpSize)
				if err := proc.ReadMem(s.p.MemPid, f.Old, old); err != nil {
					return nil, err
				}
			}
			pl.jumps = append(pl.jumps, jumpWrite{addr: f.Old, new: jump, old: old})
			pending[f.Old] = jump
			top[f.Old] = hdr
			covered[f.Old] = true
			hdr.Funcs = append(hdr.Funcs, f)
			pr.Functions = append(pr.Functions, f.Name)
		}
		if replaces != nil {
			pr.Status, pr.ReplacedLevel = StatusReplaced, replaces.hdr.Level
			for _, of := range replaces.hdr.Funcs {
				if of.RangeOnly {
					continue
				}
				if t := top[of.Old]; t != replaces.hdr && !covered[of.Old] {
					return nil, fmt.Errorf("patch %s level %d cannot replace level %d in pid %d: patch %s was applied on top of it (function %s): %w; unpatch it first",
						patch.ID, patch.Level, replaces.hdr.Level, s.p.Pid, t.ID, of.Name, ErrDependency)
				}
				if !covered[of.Old] {
					// The new level no longer patches this function:
					// put back what was under the old level.
					cur := make([]byte, s.a.JumpSize)
					if err := proc.ReadMem(s.p.MemPid, of.Old, cur); err != nil {
						return nil, err
					}
					pl.jumps = append(pl.jumps, jumpWrite{addr: of.Old, new: of.Saved, old: cur})
				}
			}
		} else {
			pr.Status = StatusApplied
		}
		pr.Base = l.base
		res.Patches = append(res.Patches, pr)
		plans = append(plans, pl)
	}
	return plans, nil
}

// checkRoom refuses a function too short for the jump unless padding
// follows it.
func (s *session) checkRoom(obj *Object, f regionFunc) error {
	if f.OldSize >= uint64(s.a.JumpSize) {
		return nil
	}
	for a := f.Old + f.OldSize; a < f.Old+uint64(s.a.JumpSize); a++ {
		if sym, ok := obj.File.FuncAt(a - obj.Bias); ok && sym.Value+obj.Bias == a {
			return fmt.Errorf("function %s in %s is %d bytes, shorter than the %d-byte jump, and %s follows it at once: %w",
				f.Name, obj.Path, f.OldSize, s.a.JumpSize, sym.Name, ErrTooShort)
		}
	}
	// Read well past the jump: a multi-byte nop must be decoded whole.
	buf := make([]byte, f.OldSize+32)
	if err := proc.ReadMem(s.p.MemPid, f.Old, buf); err != nil {
		return err
	}
	if s.a.PaddingLen(buf[f.OldSize:]) >= s.a.JumpSize-int(f.OldSize) {
		return nil
	}
	return fmt.Errorf("function %s in %s is %d bytes, shorter than the %d-byte jump, and no padding follows it: %w",
		f.Name, obj.Path, f.OldSize, s.a.JumpSize, ErrTooShort)
}

func (s *session) link(patch *patchfile.Patch, obj *Object, taken [][2]uint64) (*linked, error) {
	r := &resolver{p: s.p, target: obj}
	stubs := callStubCandidates(patch, s.a)
	secOff, stubOff, parts, hsize := layout(patch, s.a, stubs)
	size := parts[len(parts)-1].Off + parts[len(parts)-1].Size
	base, err := chooseBase(s.p.Maps, obj, size, needsLowRegion(patch) && obj.File.Type == elf.ET_EXEC, taken)
	if err != nil {
		return nil, fmt.Errorf("patch %s in pid %d: %w", patch.ID, s.p.Pid, err)
	}
	l, err := r.link(patch, s.a, secOff, stubOff, parts, hsize, base)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", s.p.Pid, err)
	}
	return l, nil
}

const (
	protRead  = unix.PROT_READ
	protWrite = unix.PROT_WRITE
	protExec  = unix.PROT_EXEC
)

func protOf(s string) uint64 {
	var p uint64
	if s[0] == 'r' {
		p |= protRead
	}
	if s[1] == 'w' {
		p |= protWrite
	}
	if s[2] == 'x' {
		p |= protExec
	}
	return p
}

// prSetVMA and prSetVMAAnonName name an anonymous mapping (Linux 5.17
// with CONFIG_ANON_VMA_NAME); without them the header alone identifies a
// region.
const (
	prSetVMA         = 0x53564d41
	prSetVMAAnonName = 0
)

// mapRegions maps every planned region with a single thread stopped, sets
// the protections of its parts, and names it where the kernel can.
func (s *session) mapRegions(plans []*plan) error {
	defer s.noteThreadStop()
	return s.tr.Do(func(c *ptrace.Ctl) error {
		th, err := s.stopInjector(c)
		if err != nil {
			return err
		}
		defer c.Detach(th)
		defer c.BesideThread(th)()
		for _, pl := range plans {
			l := pl.l
			addr, err := c.Syscall(th, s.insn, s.a.Sys.Mmap, l.base, l.size, protRead,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
			if err != nil {
				return fmt.Errorf("map the region of patch %s at %#x in pid %d: %w", pl.hdr.ID, l.base, s.p.Pid, err)
			}
			if addr != l.base {
				// An old kernel without MAP_FIXED_NOREPLACE treats it as
				// a hint; a region elsewhere is out of reach.
				_, _ = c.Syscall(th, s.insn, s.a.Sys.Munmap, addr, l.size)
				return fmt.Errorf("map the region of patch %s in pid %d: the kernel placed it at %#x, not %#x", pl.hdr.ID, s.p.Pid, addr, l.base)
			}
			s.mapped = append(s.mapped, [2]uint64{l.base, l.size})
			for _, part := range l.parts {
				if part.Prot == "r--" {
					continue
				}
				if _, err := c.Syscall(th, s.insn, s.a.Sys.Mprotect, l.base+part.Off, part.Size, protOf(part.Prot)); err != nil {
					return fmt.Errorf("protect the %s of patch %s in pid %d: %w", part.Name, pl.hdr.ID, s.p.Pid, err)
				}
			}
			s.nameRegion(c, th, pl)
		}
		return nil
	})
}

var anonNames struct {
	sync.Once
	ok bool
}

// anonNamesSupported tries PR_SET_VMA_ANON_NAME on a page of this process:
// when the kernel lacks it, injecting it into the target would only
// lengthen the stop of the thread that maps the region.
func anonNamesSupported() bool {
	anonNames.Do(func() {
		page, err := unix.Mmap(-1, 0, int(pageSize), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return
		}
		defer unix.Munmap(page)
		name := []byte("hotpatch probe\x00")
		_, _, errno := unix.Syscall6(unix.SYS_PRCTL, prSetVMA, prSetVMAAnonName,
			uintptr(unsafe.Pointer(&page[0])), uintptr(len(page)), uintptr(unsafe.Pointer(&name[0])), 0)
		anonNames.ok = errno == 0
	})
	return anonNames.ok
}

// stopInjector stops one thread to run system calls on: the main thread,
// or another one if the main thread has exited (pthread_exit leaves it a
// zombie while the others run on).
func (s *session) stopInjector(c *ptrace.Ctl) (*ptrace.Thread, error) {
	th, err := c.StopOne(s.p.Pid)
	if err == nil {
		return th, nil
	}
	tids, lerr := proc.Threads(s.p.Pid)
	if lerr != nil {
		return nil, err
	}
	for _, tid := range tids {
		if tid == s.p.Pid {
			continue
		}
		if th, terr := c.StopOne(tid); terr == nil {
			return th, nil
		}
	}
	return nil, err
}

// nameRegion labels the region "[anon:hotpatch ID]" in /proc/PID/maps
// where the kernel supports it (CONFIG_ANON_VMA_NAME). The kernel copies
// the name, so it is written into the header page, which the image
// overwrites afterwards. Failure is harmless: discovery reads the header.
func (s *session) nameRegion(c *ptrace.Ctl, th *ptrace.Thread, pl *plan) {
	if !anonNamesSupported() {
		return
	}
	name := []byte("hotpatch ")
	for _, ch := range []byte(pl.hdr.ID) {
		if ch > ' ' && ch < 0x7f && !bytes.ContainsRune([]byte("[]\\$`"), rune(ch)) {
			name = append(name, ch)
		} else {
			name = append(name, '_')
		}
	}
	name = append(name[:min(len(name), 79)], 0)
	at := pl.l.base + pl.l.headerSize - 128
	if err := s.mem.WriteAt(name, at); err != nil {
		return
	}
	_, _ = c.Syscall(th, s.insn, s.a.Sys.Prctl, prSetVMA, prSetVMAAnonName, pl.l.base, pl.l.size, at)
}

// unmapAll removes the regions this operation mapped, stopping one thread
// if none is stopped.
func (s *session) unmapAll(c *ptrace.Ctl) error {
	if len(s.mapped) == 0 {
		return nil
	}
	var th *ptrace.Thread
	for _, t := range c.Threads() {
		if t.Stopped {
			th = t
			break
		}
	}
	detach := false
	if th == nil {
		var err error
		if th, err = s.stopInjector(c); err != nil {
			return err
		}
		detach = true
	}
	defer c.BesideThread(th)()
	var firstErr error
	for _, m := range s.mapped {
		if _, err := c.Syscall(th, s.insn, s.a.Sys.Munmap, m[0], m[1]); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("unmap the region at %#x in pid %d: %w", m[0], s.p.Pid, err)
		}
	}
	s.mapped = nil
	if detach {
		if err := c.Detach(th); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (s *session) rollbackMapped(cause error) error {
	err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) })
	if err != nil {
		return fmt.Errorf("%w (and the rollback failed: %v; the process keeps an unused region)", cause, err)
	}
	return cause
}

// apply maps, fills and activates the planned regions.
func (s *session) apply(plans []*plan, res *Result) error {
	if s.mem == nil {
		return fmt.Errorf("session not open")
	}
	if err := s.mapRegions(plans); err != nil {
		return s.rollbackMapped(err)
	}
	if err := s.opt.hit("after-mmap"); err != nil {
		return s.rollbackMapped(err)
	}
	now := time.Now().UTC()
	for _, pl := range plans {
		pl.hdr.AppliedAt = now.Format(time.RFC3339Nano)
		if err := s.writeImage(pl); err != nil {
			return s.rollbackMapped(err)
		}
	}
	var danger []dangerRange
	var writes []jumpWrite
	var replaced []*Region
	var extra []*linked
	for _, pl := range plans {
		for _, f := range pl.l.funcs {
			danger = append(danger, dangerRange{start: f.Old, end: f.Old + f.OldSize, name: f.Name, entryOK: s.entrySafe(f)})
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
	var pause time.Duration
	attempts := 0
	deadline := time.Now().Add(s.opt.Timeout)
	maxAttempts := s.opt.Retries + 1
	// A garbage collection inside the stop would lengthen it; the few
	// allocations of the check can wait.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	err := s.tr.Do(func(c *ptrace.Ctl) error {
		restore := c.Realtime()
		defer restore()
		backoff := time.Millisecond
		for {
			attempts++
			if err := c.StopAll(); err != nil {
				return s.failInPause(c, err, nil, rollbackRegions)
			}
			busy, err := chk.check(c.Threads())
			if err != nil {
				return s.failInPause(c, err, nil, rollbackRegions)
			}
			if busy == nil {
				break
			}
			busy.Attempts = attempts
			if attempts >= maxAttempts || time.Now().Add(backoff).After(deadline) {
				return s.failInPause(c, busy, nil, rollbackRegions)
			}
			if err := c.ResumeAll(); err != nil {
				return s.failInPause(c, err, nil, rollbackRegions)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 50*time.Millisecond)
		}
		var done []jumpWrite
		for i, w := range writes {
			if err := s.mem.WriteAt(w.new, w.addr); err != nil {
				return s.failInPause(c, fmt.Errorf("write the jump at %s: %w", s.p.describe(w.addr), err), done, rollbackRegions)
			}
			done = append(done, w)
			if i == 0 {
				if err := s.opt.hit("after-first-jump"); err != nil {
					return s.failInPause(c, err, done, rollbackRegions)
				}
			}
		}
		if err := c.DetachAll(); err != nil {
			return err
		}
		pause = c.LastResume.Sub(c.FirstStop)
		return nil
	})
	return pause, attempts - 1, err
}

// failInPause undoes the writes already made and, when asked, unmaps the
// new regions, all before the threads resume.
func (s *session) failInPause(c *ptrace.Ctl, cause error, done []jumpWrite, unmap bool) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if err := s.mem.WriteAt(done[i].old, done[i].addr); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", s.p.describe(done[i].addr), err))
		}
	}
	if unmap {
		if err := s.unmapAll(c); err != nil {
			errs = append(errs, err)
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

// Unpatch removes the patch with the given id, or the most recent one
// when id is empty, from process pid.
func Unpatch(pid int, id string, opt Options) (*Result, error) {
	s, err := newSession(pid, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{Pid: pid}
	if len(s.regions) == 0 {
		return res, fmt.Errorf("unpatch pid %d: %w", pid, ErrNotPatched)
	}
	var victim *Region
	for _, r := range s.regions {
		if id == "" || r.hdr.ID == id {
			victim = r // regions are sorted by Seq: the last match is the newest
		}
	}
	if victim == nil {
		return res, fmt.Errorf("unpatch pid %d: patch %s: %w", pid, id, ErrNotPatched)
	}
	for _, r := range s.regions {
		if r.hdr.Seq <= victim.hdr.Seq {
			continue
		}
		for _, f := range r.hdr.Funcs {
			if f.Prev == victim.hdr.Base {
				return res, fmt.Errorf("unpatch %s from pid %d: patch %s is stacked on it (function %s): %w; unpatch %s first",
					victim.hdr.ID, pid, r.hdr.ID, f.Name, ErrDependency, r.hdr.ID)
			}
		}
	}
	if err := s.open(); err != nil {
		return res, err
	}
	defer s.close()
	removed := PatchResult{ID: victim.hdr.ID, Level: victim.hdr.Level, BuildID: victim.hdr.BuildID,
		Object: victim.hdr.Target, Status: StatusRemoved, Functions: victim.Functions(), Base: victim.hdr.Base}
	if activeState(s.p, s.a, s.regions, victim) == stateInactive {
		// Its jumps were never written in this process: only the
		// region is left to remove, and no thread can be in it.
		s.mapped = [][2]uint64{{victim.hdr.Base, victim.hdr.Size}}
		if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
			return res, err
		}
		s.noteThreadStop()
		res.ThreadStopUS = s.threadStop.Microseconds()
		res.Patches = append(res.Patches, removed)
		return res, nil
	}
	var writes []jumpWrite
	for _, f := range victim.hdr.Funcs {
		if f.RangeOnly {
			continue
		}
		cur := make([]byte, len(f.Saved))
		if err := proc.ReadMem(s.p.MemPid, f.Old, cur); err != nil {
			return res, fmt.Errorf("unpatch %s from pid %d: read the entry of %s: %w", victim.hdr.ID, pid, f.Name, err)
		}
		if want, ok := s.a.EncodeJump(f.Old, f.New); !ok || !bytes.Equal(cur, want) {
			return res, fmt.Errorf("unpatch %s from pid %d: the entry of %s no longer holds the patch's jump (someone else changed the code); refusing to restore it",
				victim.hdr.ID, pid, f.Name)
		}
		writes = append(writes, jumpWrite{addr: f.Old, new: f.Saved, old: cur})
	}
	var danger []dangerRange
	if victim.hdr.TextEnd > victim.hdr.TextStart {
		danger = append(danger, dangerRange{start: victim.hdr.TextStart, end: victim.hdr.TextEnd, name: "the code of patch " + victim.hdr.ID})
	}
	hdrs := make([]*regionHeader, len(s.regions))
	for i, r := range s.regions {
		hdrs[i] = r.hdr
	}
	chk, err := newChecker(s.p, hdrs, nil, danger)
	if err != nil {
		return res, err
	}
	defer chk.close()
	pause, retries, err := s.pause(chk, writes, false)
	res.Retries = retries
	if err != nil {
		return res, err
	}
	res.PauseUS = pause.Microseconds()
	s.mapped = [][2]uint64{{victim.hdr.Base, victim.hdr.Size}}
	if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
		return res, fmt.Errorf("patch %s is inactive in pid %d, but unmapping its region failed: %w", victim.hdr.ID, pid, err)
	}
	s.noteThreadStop()
	res.ThreadStopUS = s.threadStop.Microseconds()
	res.Patches = append(res.Patches, removed)
	return res, nil
}

// ObjectInfo is a loaded object and the patches applied to it.
type ObjectInfo struct {
	Path    string      `json:"path"`
	BuildID string      `json:"build_id"`
	Base    uint64      `json:"load_bias"`
	Patches []PatchInfo `json:"patches"`
}

// PatchInfo describes an applied patch.
type PatchInfo struct {
	ID        string    `json:"id"`
	Level     uint32    `json:"level"`
	Functions []string  `json:"functions"`
	AppliedAt time.Time `json:"applied_at"`
	PauseUS   int64     `json:"pause_us"`
	Region    uint64    `json:"region"`
	Size      uint64    `json:"size"`
	// Active is false when the region is there but its jumps are not
	// (a process forked while the patch was being applied).
	Active bool `json:"active"`
}

// ProcessInfo is what info reports for one process.
type ProcessInfo struct {
	Pid     int          `json:"pid"`
	Command string       `json:"command"`
	Objects []ObjectInfo `json:"objects"`
	// Orphans are regions whose object is no longer loaded.
	Orphans []PatchInfo `json:"orphans,omitempty"`
}

// Info lists the loaded objects of pid and the patches applied to each,
// from the process alone.
func Info(pid int) (*ProcessInfo, error) {
	p, err := Inspect(pid)
	if err != nil {
		return nil, err
	}
	regions, err := FindRegions(p.MemPid, p.Maps)
	if err != nil {
		return nil, err
	}
	comm, _ := proc.Comm(pid)
	pi := &ProcessInfo{Pid: pid, Command: comm}
	a, err := arch.ForMachine(p.Objects[0].File.Machine)
	if err != nil {
		return nil, err
	}
	used := make([]bool, len(regions))
	for _, o := range p.Objects {
		oi := ObjectInfo{Path: o.Path, BuildID: hex.EncodeToString(o.File.BuildID), Base: o.Bias, Patches: []PatchInfo{}}
		for i, r := range regions {
			if r.hdr.BuildID == oi.BuildID && oi.BuildID != "" {
				oi.Patches = append(oi.Patches, patchInfo(p, a, regions, r))
				used[i] = true
			}
		}
		pi.Objects = append(pi.Objects, oi)
	}
	for i, r := range regions {
		if !used[i] {
			pi.Orphans = append(pi.Orphans, patchInfo(p, a, regions, r))
		}
	}
	return pi, nil
}

func patchInfo(p *Process, a *arch.Arch, all []*Region, r *Region) PatchInfo {
	return PatchInfo{ID: r.hdr.ID, Level: r.hdr.Level, Functions: r.Functions(), AppliedAt: r.AppliedAt(),
		PauseUS: r.hdr.PauseUS, Region: r.hdr.Base, Size: r.hdr.Size, Active: activeState(p, a, all, r) == stateActive}
}

type regionState int

const (
	stateActive   regionState = iota // every entry jumps to it, or to a patch stacked on it
	stateInactive                    // every entry holds what it saved: its jumps were never written here
	stateMixed
)

// activeState checks the entries a region redirects. A process forked
// between the mapping of a region and the writing of its jumps inherits
// the region but not the jumps: info must not call that patch applied.
func activeState(p *Process, a *arch.Arch, all []*Region, r *Region) regionState {
	active, inactive, n := 0, 0, 0
	for _, f := range r.hdr.Funcs {
		if f.RangeOnly {
			continue
		}
		n++
		cur := make([]byte, a.JumpSize)
		if err := proc.ReadMem(p.MemPid, f.Old, cur); err != nil {
			continue
		}
		if want, ok := a.EncodeJump(f.Old, f.New); ok && bytes.Equal(cur, want) || stackedOn(all, r, f.Old) {
			active++
		} else if bytes.Equal(cur, f.Saved) {
			inactive++
		}
	}
	switch {
	case active == n:
		return stateActive
	case inactive == n:
		return stateInactive
	}
	return stateMixed
}

// stackedOn reports whether a newer region redirects old on top of r.
func stackedOn(all []*Region, r *Region, old uint64) bool {
	for _, o := range all {
		if o.hdr.Seq <= r.hdr.Seq {
			continue
		}
		for _, f := range o.hdr.Funcs {
			if f.Old == old && f.Prev == r.hdr.Base {
				return true
			}
		}
	}
	return false
}
