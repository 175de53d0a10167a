package patcher

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"golang.org/x/sys/unix"
)

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
// the protections of its parts, names it where the kernel can, copies the
// image in, and registers its call frame information with the target's
// unwinder when the process has one, so that the target sees one stop.
//
// Every round trip to the stopped thread costs context switches, so the
// system calls run as one sequence of code. Where an executable segment
// leaves room at the end of its last page (see reserveScratch), the whole
// sequence, mmap included, runs from there in one round trip, and, when
// they fit as well, copies the regions' call frame information in and
// registers it; otherwise the mmap is injected alone, the rest runs from
// the new region's text, and the frames are written and registered by a
// call injected in the same stop. The image is written after the thread
// resumed, the header last.
func (s *session) mapRegions(plans []*plan) error {
	unwinder, withFrames := s.frameRegistration(plans)
	calls := s.setupCalls(plans)
	marks, err := provisionalHeaders(plans)
	if err != nil {
		return err
	}
	s.readSignalHandlers()
	sc, err := s.writeScratchSequence(plans, calls, unwinder, withFrames, marks)
	if err != nil {
		return err
	}
	err = s.tr.Do(func(c *ptrace.Ctl) error {
		return s.withInjector(c, func(th *ptrace.Thread) (err error) {
			// Whatever happens from here, every region mapped carries
			// a header before the thread resumes.
			defer func() {
				if merr := s.markMapped(plans, marks, sc); merr != nil && err == nil {
					err = merr
				}
			}()
			if sc != nil {
				err = s.mapFromScratch(c, th, sc, unwinder)
			} else {
				err = s.mapOnThread(c, th, plans, calls)
			}
			if err != nil {
				return err
			}
			for _, pl := range withFrames {
				if pl.hdr.EHRegistered {
					continue
				}
				ret := pl.l.trapAddr
				if sc != nil {
					ret = sc.code + uint64(sc.seq.Trap)
				}
				if err := s.registerFrames(c, th, unwinder, pl, ret); err != nil {
					return err
				}
			}
			return nil
		})
	})
	s.noteThreadStop()
	if sc != nil {
		if rerr := s.releaseScratch(sc); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return err
	}
	// Tests stop here, as a tool killed between the stop and the image
	// would.
	if err := s.opt.hit("before-image"); err != nil {
		return err
	}
	for _, pl := range plans {
		if pl.hdr.EHRegistered {
			err = s.writeAfterRegistration(pl)
		} else {
			err = s.writeImage(pl)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// provisionalHeaders encodes, before the stop, the provisional header of
// each plan's region in both forms the stop may need: without and with
// its call frame information registered. Encoding takes longer than the
// write, and the stop only writes.
func provisionalHeaders(plans []*plan) (map[*plan][2][]byte, error) {
	out := map[*plan][2][]byte{}
	for _, pl := range plans {
		var both [2][]byte
		for i, registered := range []bool{false, true} {
			h := pl.hdr.provisional()
			h.EHRegistered = registered
			b, err := h.encode()
			if err != nil {
				return nil, err
			}
			if uint64(len(b)) > pl.l.headerSize {
				return nil, fmt.Errorf("region header of patch %s is %d bytes, %d reserved", pl.hdr.ID, len(b), pl.l.headerSize)
			}
			both[i] = b
		}
		out[pl] = both
	}
	return out, nil
}

// markMapped writes the provisional header at the start of every region
// this operation mapped, and the trap that withdrawing its call frame
// information returns to, while the thread that mapped them is stopped:
// if the tool dies after it resumes, info lists the regions and unpatch
// removes them. Resumable set-up code that ran to its end did it already,
// unless a region's frames were registered after it.
func (s *session) markMapped(plans []*plan, marks map[*plan][2][]byte, sc *scratch) error {
	var errs []error
	for _, pl := range plans {
		if sc != nil && sc.marked && sc.done && slices.Contains(sc.framed, pl) == pl.hdr.EHRegistered {
			// The set-up code copied the right header in.
			continue
		}
		for _, m := range s.mapped {
			if m[0] != pl.l.base {
				continue
			}
			b := marks[pl][0]
			if pl.hdr.EHRegistered {
				b = marks[pl][1]
			}
			err := s.mem.WriteAt(b, pl.l.base)
			if err == nil && pl.hdr.EHRegistered {
				err = s.mem.WriteAt(s.a.Trap, pl.hdr.TrapAddr)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("mark the region of patch %s at %#x in pid %d: %w", pl.hdr.ID, pl.l.base, s.p.Pid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// setupCall is one system call that prepares a region.
type setupCall struct {
	arch.SyscallCall
	plan *plan
	what string
}

// setupCalls lists, for each region, the mmap that creates it read and
// execute, the mprotects that give its other parts their protection, and
// the prctl that names it (its name's address is filled in later, where
// the name is written). Without MAP_FIXED_NOREPLACE an old kernel would
// take the address as a hint; the mmap must return it exactly.
func (s *session) setupCalls(plans []*plan) []setupCall {
	var calls []setupCall
	for _, pl := range plans {
		l := pl.l
		calls = append(calls, setupCall{plan: pl, what: fmt.Sprintf("map the region of patch %s at %#x", pl.hdr.ID, l.base),
			SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mmap, Success: arch.SuccessArg0,
				Args: []uint64{l.base, l.size, protRead | protExec, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0}}})
		for _, part := range l.parts {
			if part.Prot == "r-x" {
				continue
			}
			calls = append(calls, setupCall{plan: pl, what: fmt.Sprintf("protect the %s of patch %s", part.Name, pl.hdr.ID),
				SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mprotect, Args: []uint64{l.base + part.Off, part.Size, protOf(part.Prot)}}})
		}
		if regionName(pl) != nil {
			calls = append(calls, setupCall{plan: pl, what: "name the region of patch " + pl.hdr.ID,
				SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Prctl, Success: arch.SuccessAlways,
					Args: []uint64{prSetVMA, prSetVMAAnonName, l.base, l.size, 0}}})
		}
	}
	return calls
}

func syscallCalls(calls []setupCall) []arch.SyscallCall {
	out := make([]arch.SyscallCall, len(calls))
	for i, c := range calls {
		out[i] = c.SyscallCall
	}
	return out
}

// mapFromScratch runs the whole set-up sequence from the scratch code,
// the registration of call frame information included when it fits.
func (s *session) mapFromScratch(c *ptrace.Ctl, th *ptrace.Thread, sc *scratch, fns unwinderFuncs) error {
	regs, err := s.runScratch(c, th, sc)
	if err != nil {
		return err
	}
	off := int(regs.PC() - sc.code)
	// A region is mapped once its mmap passed its check, and its frames
	// registered once the call returned: the code went past them.
	for i, call := range sc.calls {
		if call.Success == arch.SuccessArg0 && sc.seq.Failed[i] < off {
			s.mapped = append(s.mapped, [2]uint64{call.Args[0], call.Args[1]})
		}
	}
	for i, pl := range sc.framed {
		if sc.framedEnd[i] <= off {
			s.frames = append(s.frames, frameReg{eh: pl.l.ehAddr, trap: pl.l.trapAddr, dereg: fns.dereg})
			pl.hdr.EHRegistered = true
		}
	}
	if off == sc.seq.Done {
		sc.done = true
		return nil
	}
	failed := sc.seq.FailedCall(off)
	if failed < 0 {
		return fmt.Errorf("the set-up code in pid %d stopped at an unexpected place (%#x, code at %#x)", s.p.Pid, regs.PC(), sc.code)
	}
	return s.setupFailed(c, th, sc.calls[failed], regs.Result())
}

// runScratch runs the code in the scratch room on th. Resumable code gets
// th's registers in its block first: from then on, if the tool dies, the
// thread runs the code to its end and goes back to what it was doing.
func (s *session) runScratch(c *ptrace.Ctl, th *ptrace.Thread, sc *scratch) (ptrace.Regs, error) {
	if !sc.resumable {
		return c.RunCode(th, sc.code)
	}
	sig := 0
	if blocked, err := c.BlockedSignals(th); err == nil {
		sig = s.markerSignal(blocked)
	}
	if sig == 0 {
		// The thread blocks every marker signal: end the code with a
		// trap over the resume code instead, as code that is not
		// resumable does.
		at := sc.code + uint64(sc.resumeAt)
		if err := s.mem.WriteAt(s.a.Trap, at); err != nil {
			return ptrace.Regs{}, fmt.Errorf("write a trap at %#x in %s of pid %d: %w", at, sc.path, s.p.Pid, err)
		}
		sc.seq.Done = sc.resumeAt + len(s.a.Trap)
		return c.RunCode(th, sc.code)
	}
	if err := s.mem.WriteAt(s.a.EncodeResumeBlock(c.ResumeState(th), th.Tid, sig), sc.block); err != nil {
		return ptrace.Regs{}, fmt.Errorf("write the resume block at %#x in %s of pid %d: %w", sc.block, sc.path, s.p.Pid, err)
	}
	return c.RunCodeUntil(th, sc.code, sc.code+uint64(sc.seq.Done), sig)
}

// readSignalHandlers notes which signals the program handles, outside
// any stop: handlers belong to the process and seldom change.
func (s *session) readSignalHandlers() {
	if m, err := proc.ThreadSignals(s.p.Pid, s.p.MemPid); err == nil {
		s.sigCaught = m.Caught
	}
}

// markerSignal picks the signal that ends resumable code on a thread
// that blocks the signals in blocked: one it does not block, since a
// blocked signal would not stop it, and preferably one the program does
// not handle (its handlers were read before the stop). 0 means the
// thread blocks them all.
func (s *session) markerSignal(blocked uint64) int {
	fallback := 0
	for _, sig := range arch.MarkerSignals {
		bit := uint64(1) << (sig - 1)
		if blocked&bit != 0 {
			continue
		}
		if s.sigCaught&bit == 0 {
			return sig
		}
		if fallback == 0 {
			fallback = sig
		}
	}
	return fallback
}

// setupFailed reports a set-up call that failed with result res. An mmap
// that returned an address other than the one asked for ran on a kernel
// that took MAP_FIXED_NOREPLACE as a hint: the mapping it made is
// removed, a region out of reach being of no use.
func (s *session) setupFailed(c *ptrace.Ctl, th *ptrace.Thread, call setupCall, res uint64) error {
	if v := int64(res); v < 0 && v > -4096 {
		return fmt.Errorf("%s in pid %d: %w", call.what, s.p.Pid, &ptrace.SyscallError{Nr: call.Nr, Errno: unix.Errno(-v)})
	}
	if call.Success == arch.SuccessArg0 {
		_, _ = c.Syscall(th, s.insn, s.a.Sys.Munmap, res, call.Args[1])
		return fmt.Errorf("%s in pid %d: the kernel placed it at %#x instead", call.what, s.p.Pid, res)
	}
	return fmt.Errorf("%s in pid %d: unexpected result %#x", call.what, s.p.Pid, res)
}

// mapOnThread maps the regions from a stopped thread when there is no
// scratch room: each mmap is injected alone, the rest runs from the text
// of a new region.
func (s *session) mapOnThread(c *ptrace.Ctl, th *ptrace.Thread, plans []*plan, calls []setupCall) error {
	var rest []setupCall
	for _, call := range calls {
		switch {
		case call.Success == arch.SuccessArg0:
			addr, err := c.Syscall(th, s.insn, call.Nr, call.Args...)
			if err != nil {
				return fmt.Errorf("%s in pid %d: %w", call.what, s.p.Pid, err)
			}
			if addr != call.Args[0] {
				return s.setupFailed(c, th, call, addr)
			}
			s.mapped = append(s.mapped, [2]uint64{call.Args[0], call.Args[1]})
		case call.Nr == s.a.Sys.Prctl:
			// The kernel copies the name: the header page, which the
			// image overwrites afterwards, can hold it.
			at := call.plan.l.base + call.plan.l.headerSize - 128
			if err := s.mem.WriteAt(regionName(call.plan), at); err != nil {
				continue
			}
			call.Args = append([]uint64(nil), call.Args...)
			call.Args[4] = at
			rest = append(rest, call)
		default:
			rest = append(rest, call)
		}
	}
	return s.runSequence(c, th, plans, rest)
}

// runSequence runs calls on th, from code written into the text of the
// first region that has one, or one call at a time without one.
func (s *session) runSequence(c *ptrace.Ctl, th *ptrace.Thread, plans []*plan, calls []setupCall) error {
	if len(calls) == 0 {
		return nil
	}
	var at uint64
	for _, pl := range plans {
		for _, part := range pl.l.parts {
			if part.Prot == "r-x" && at == 0 {
				at = pl.l.base + part.Off
			}
		}
	}
	if at == 0 || s.a.EncodeSyscalls == nil {
		for _, call := range calls {
			if _, err := c.Syscall(th, s.insn, call.Nr, call.Args...); err != nil && call.Success != arch.SuccessAlways {
				return fmt.Errorf("%s in pid %d: %w", call.what, s.p.Pid, err)
			}
		}
		return nil
	}
	seq := s.a.EncodeSyscalls(syscallCalls(calls))
	if err := s.mem.WriteAt(seq.Code, at); err != nil {
		return fmt.Errorf("write the set-up code into pid %d: %w", s.p.Pid, err)
	}
	regs, err := c.RunCode(th, at)
	if err != nil {
		return err
	}
	off := int(regs.PC() - at)
	if off == seq.Done {
		return nil
	}
	if failed := seq.FailedCall(off); failed >= 0 {
		return s.setupFailed(c, th, calls[failed], regs.Result())
	}
	return fmt.Errorf("the set-up code in pid %d stopped at an unexpected place (%#x)", s.p.Pid, regs.PC())
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

// injectorCandidate picks the thread to run system calls on. A thread
// asleep in a blocking call is best: it is stopped at once and, having
// slept, the scheduler runs it promptly at each round trip, where a thread
// that spins on a busy CPU waits its turn behind the others every time.
// The main thread is the fallback (unless it exited: pthread_exit leaves
// it a zombie while the others run on).
func (s *session) injectorCandidate() int {
	if s.held {
		return s.p.MemPid
	}
	tids, err := proc.Threads(s.p.Pid)
	if err != nil {
		return s.p.MemPid
	}
	for i, tid := range tids {
		if i == 64 {
			break
		}
		if st, err := proc.ThreadState(s.p.Pid, tid); err == nil && st == 'S' {
			return tid
		}
	}
	return s.p.MemPid
}

// stopInjector stops the injector candidate, or any thread that can be
// stopped.
func (s *session) stopInjector(c *ptrace.Ctl, candidate int) (*ptrace.Thread, error) {
	th, err := c.StopOne(candidate)
	if err == nil {
		return th, nil
	}
	tids, lerr := proc.Threads(s.p.Pid)
	if lerr != nil {
		return nil, err
	}
	for _, tid := range tids {
		if tid == candidate {
			continue
		}
		if th, terr := c.StopOne(tid); terr == nil {
			return th, nil
		}
	}
	return nil, err
}

// withInjector stops one thread to run injected calls on, with the tracer
// beside it on its CPU and in a real-time class and the thread confined to
// that CPU, runs fn, and resumes the thread. A thread that was running,
// not blocked in a system call, needs its CPU back at once: the tracer
// then moves off it (see leaveAfterwards); beside a thread that goes back
// to sleep it stays, rather than land on a CPU where another thread runs.
func (s *session) withInjector(c *ptrace.Ctl, fn func(th *ptrace.Thread) error) error {
	candidate := s.injectorCandidate()
	leave := leaveAfterwards()
	defer c.Realtime()()
	defer c.BesideThread(candidate)()
	th, err := s.stopInjector(c, candidate)
	if err != nil {
		return err
	}
	if !th.Regs.InSyscall() {
		defer leave()
	}
	release, afterResume := confineBeside(th.Tid)
	err = fn(th)
	if !afterResume {
		release()
	}
	// A held thread was stopped before the operation and stays so until
	// the pause: the program must not run unpatched meanwhile.
	if !s.held {
		if derr := c.Detach(th); derr != nil && err == nil {
			err = derr
		}
	}
	if afterResume {
		release()
	}
	return err
}

// regionName is the label "[anon:hotpatch ID]" that /proc/PID/maps shows
// for the region where the kernel supports anonymous names
// (CONFIG_ANON_VMA_NAME), NUL-terminated, or nil without kernel support:
// the header alone identifies a region.
func regionName(pl *plan) []byte {
	if !anonNamesSupported() {
		return nil
	}
	name := []byte("hotpatch ")
	for _, ch := range []byte(pl.hdr.ID) {
		if ch > ' ' && ch < 0x7f && !bytes.ContainsRune([]byte("[]\\$`"), rune(ch)) {
			name = append(name, ch)
		} else {
			name = append(name, '_')
		}
	}
	return append(name[:min(len(name), 79)], 0)
}

// unmapAll removes the regions this operation mapped, stopping one thread
// if none is stopped. Call frame information registered from a region is
// withdrawn first, or the next exception would read unmapped memory. The
// munmaps run as one sequence from scratch room when there is some.
func (s *session) unmapAll(c *ptrace.Ctl) error {
	if len(s.mapped) == 0 {
		return nil
	}
	var calls []setupCall
	for _, m := range s.mapped {
		calls = append(calls, setupCall{what: fmt.Sprintf("unmap the region at %#x", m[0]),
			SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Munmap, Args: []uint64{m[0], m[1]}}})
	}
	s.readSignalHandlers()
	sc, err := s.writeScratchSequence(nil, calls, unwinderFuncs{}, nil, nil)
	if err != nil {
		sc = nil
	}
	var stopped *ptrace.Thread
	for _, t := range c.Threads() {
		if t.Stopped {
			stopped = t
			break
		}
	}
	if stopped != nil {
		err = s.unmapOn(c, stopped, sc, calls)
	} else {
		err = s.withInjector(c, func(th *ptrace.Thread) error { return s.unmapOn(c, th, sc, calls) })
	}
	if sc != nil {
		if rerr := s.releaseScratch(sc); rerr != nil && err == nil {
			err = rerr
		}
	}
	s.mapped = nil
	return err
}

// unmapOn withdraws the call frame information of the regions and unmaps
// them from the stopped thread th.
func (s *session) unmapOn(c *ptrace.Ctl, th *ptrace.Thread, sc *scratch, calls []setupCall) error {
	var errs []error
	for _, m := range s.mapped {
		for i := 0; i < len(s.frames); i++ {
			f := s.frames[i]
			if f.eh < m[0] || f.eh >= m[0]+m[1] {
				continue
			}
			if _, err := c.Call(th, f.dereg, f.trap, f.eh); err != nil {
				errs = append(errs, fmt.Errorf("withdraw the call frame information of the region at %#x in pid %d: %w", m[0], s.p.Pid, err))
			}
			s.frames = append(s.frames[:i], s.frames[i+1:]...)
			i--
		}
	}
	rest := calls
	if sc != nil {
		regs, err := s.runScratch(c, th, sc)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		off := int(regs.PC() - sc.code)
		switch failed := sc.seq.FailedCall(off); {
		case off == sc.seq.Done:
			rest = nil
		case failed >= 0:
			errs = append(errs, s.setupFailed(c, th, calls[failed], regs.Result()))
			rest = calls[failed+1:]
		default:
			return errors.Join(append(errs, fmt.Errorf("the unmapping code in pid %d stopped at an unexpected place (%#x, code at %#x)", s.p.Pid, regs.PC(), sc.code))...)
		}
	}
	for _, call := range rest {
		if _, err := c.Syscall(th, s.insn, call.Nr, call.Args...); err != nil {
			errs = append(errs, fmt.Errorf("%s in pid %d: %w", call.what, s.p.Pid, err))
		}
	}
	return errors.Join(errs...)
}

// frameReg is call frame information of a region registered with the
// target's unwinder (libgcc), so that C++ exceptions pass through patch
// code.
type frameReg struct {
	eh, trap, dereg uint64
}

// frameFuncs finds libgcc's registration functions in the process; ok is
// false when none is loaded (a C program: nothing throws through it).
func (s *session) frameFuncs() (reg, dereg uint64, ok bool) {
	r := &resolver{p: s.p, target: s.p.Objects[0]}
	regSym := patchfile.Symbol{Name: "__register_frame_info", Kind: patchfile.SymExternal}
	deregSym := patchfile.Symbol{Name: "__deregister_frame_info", Kind: patchfile.SymExternal}
	reg, err1 := r.address(&regSym)
	dereg, err2 := r.address(&deregSym)
	return reg, dereg, err1 == nil && err2 == nil
}

// frameRegistration returns libgcc's registration function and the plans
// whose call frame information it must learn, or none when the process
// has no such unwinder (a C program: nothing throws through it).
func (s *session) frameRegistration(plans []*plan) (fns unwinderFuncs, todo []*plan) {
	for _, pl := range plans {
		if pl.l.ehSize > 0 && pl.l.frameObj != 0 {
			todo = append(todo, pl)
		}
	}
	if len(todo) == 0 {
		return unwinderFuncs{}, nil
	}
	reg, dereg, ok := s.frameFuncs()
	if !ok {
		return unwinderFuncs{}, nil
	}
	return unwinderFuncs{reg: reg, dereg: dereg}, todo
}

// unwinderFuncs are libgcc's functions that register and withdraw call
// frame information.
type unwinderFuncs struct{ reg, dereg uint64 }

// registerFrames registers the call frame information of a new region with
// the target's unwinder, on the thread stopped to map it, before any jump
// makes the patch code reachable. libgcc reads the frames when they are
// registered, so they are written first; the rest of the image is written
// after the thread resumed (see writeAfterRegistration). The call returns
// to a trap at ret: the scratch code's, or the region's own, written here
// too. The frame object lives in the region, so the registration
// allocates nothing.
func (s *session) registerFrames(c *ptrace.Ctl, th *ptrace.Thread, fns unwinderFuncs, pl *plan, ret uint64) error {
	l := pl.l
	spans := [][2]uint64{{l.ehAddr, l.ehSize}}
	if ret == l.trapAddr {
		spans = append(spans, [2]uint64{l.trapAddr, 16})
	}
	for _, span := range spans {
		off := span[0] - l.base
		if err := s.mem.WriteAt(l.image[off:off+span[1]], span[0]); err != nil {
			return fmt.Errorf("copy the call frame information of patch %s into pid %d: %w", pl.hdr.ID, s.p.Pid, err)
		}
	}
	if _, err := c.Call(th, fns.reg, ret, l.ehAddr, l.frameObj); err != nil {
		return fmt.Errorf("register the call frame information of patch %s with the unwinder of pid %d: %w", pl.hdr.ID, s.p.Pid, err)
	}
	s.frames = append(s.frames, frameReg{eh: l.ehAddr, trap: l.trapAddr, dereg: fns.dereg})
	pl.hdr.EHRegistered = true
	return nil
}

// writeAfterRegistration writes the image of a region whose call frame
// information is registered: everything but the frame object, which libgcc
// filled in and links to its other objects, and the header last, so that
// a header exists only for a complete region and records the
// registration.
func (s *session) writeAfterRegistration(pl *plan) error {
	l := pl.l
	obj := l.frameObj - l.base
	for _, span := range [][2]uint64{{l.headerSize, obj}, {obj + frameObjectSize, uint64(len(l.image))}} {
		if span[1] <= span[0] {
			continue
		}
		if err := s.mem.WriteAt(l.image[span[0]:span[1]], l.base+span[0]); err != nil {
			return fmt.Errorf("copy patch %s into pid %d: %w", pl.hdr.ID, s.p.Pid, err)
		}
	}
	if err := s.writeHeader(pl.hdr, l.headerSize); err != nil {
		return fmt.Errorf("write the header of patch %s into pid %d: %w", pl.hdr.ID, s.p.Pid, err)
	}
	return nil
}

// noteRegistered records that a region found in the process registered
// its call frame information, so that unmapping it withdraws it.
func (s *session) noteRegistered(h *regionHeader) {
	if !h.EHRegistered {
		return
	}
	if _, dereg, ok := s.frameFuncs(); ok {
		s.frames = append(s.frames, frameReg{eh: h.EHFrameAddr, trap: h.TrapAddr, dereg: dereg})
	}
}

func (s *session) rollbackMapped(cause error) error {
	err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) })
	if err != nil {
		return fmt.Errorf("%w (and the rollback failed: %v; the process keeps an unused region)", cause, err)
	}
	return cause
}
