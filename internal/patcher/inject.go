package patcher

import (
	"bytes"
	"fmt"
	"strings"
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
// the protections of its parts, and names it where the kernel can. Each
// region is mapped read+execute by an injected mmap; then one sequence of
// calls, written into the first region's text and run in one go, sets the
// header, rodata and data parts to their final protections. Every round
// trip to the stopped thread is a context switch or two, so one sequence
// beats a system call at a time.
func (s *session) mapRegions(plans []*plan) error {
	defer s.noteThreadStop()
	return s.tr.Do(func(c *ptrace.Ctl) error {
		return s.withInjector(c, func(th *ptrace.Thread) error {
			return s.mapOnThread(c, th, plans)
		})
	})
}

// mapOnThread maps the regions from a stopped thread.
func (s *session) mapOnThread(c *ptrace.Ctl, th *ptrace.Thread, plans []*plan) error {
	var calls []arch.SyscallCall
	var what []string
	for _, pl := range plans {
		l := pl.l
		addr, err := c.Syscall(th, s.insn, s.a.Sys.Mmap, l.base, l.size, protRead|protExec,
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
			if part.Prot == "r-x" {
				continue
			}
			calls = append(calls, arch.SyscallCall{Nr: s.a.Sys.Mprotect, Args: []uint64{l.base + part.Off, part.Size, protOf(part.Prot)}})
			what = append(what, fmt.Sprintf("protect the %s of patch %s", part.Name, pl.hdr.ID))
		}
		if nameAt, ok := s.writeRegionName(pl); ok {
			calls = append(calls, arch.SyscallCall{Nr: s.a.Sys.Prctl, Args: []uint64{prSetVMA, prSetVMAAnonName, l.base, l.size, nameAt}})
			what = append(what, "name the region of patch "+pl.hdr.ID)
		}
	}
	return s.runSequence(c, th, plans, calls, what)
}

// runSequence runs calls on th, from code written into the text of the
// first region that has one, or one call at a time without one.
func (s *session) runSequence(c *ptrace.Ctl, th *ptrace.Thread, plans []*plan, calls []arch.SyscallCall, what []string) error {
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
	code, stops := s.a.EncodeSyscalls(calls)
	if at == 0 || s.a.EncodeSyscalls == nil {
		for i, call := range calls {
			if _, err := c.Syscall(th, s.insn, call.Nr, call.Args...); err != nil && !isNaming(what[i]) {
				return fmt.Errorf("%s in pid %d: %w", what[i], s.p.Pid, err)
			}
		}
		return nil
	}
	if err := s.mem.WriteAt(code, at); err != nil {
		return fmt.Errorf("write the set-up code into pid %d: %w", s.p.Pid, err)
	}
	for {
		regs, err := c.RunCode(th, at)
		if err != nil {
			return err
		}
		off := int(regs.PC() - at)
		if off == stops[len(stops)-1] {
			return nil
		}
		failed := -1
		for i, stop := range stops {
			if stop == off {
				failed = i
			}
		}
		if failed < 0 {
			return fmt.Errorf("set-up code in pid %d stopped at an unexpected place (%#x)", s.p.Pid, regs.PC())
		}
		if !isNaming(what[failed]) {
			return fmt.Errorf("%s in pid %d: %w", what[failed], s.p.Pid, &ptrace.SyscallError{Nr: calls[failed].Nr, Errno: unix.Errno(-int64(regs.Result()))})
		}
		// Naming is optional: run the rest.
		calls, what = calls[failed+1:], what[failed+1:]
		if len(calls) == 0 {
			return nil
		}
		code, stops = s.a.EncodeSyscalls(calls)
		if err := s.mem.WriteAt(code, at); err != nil {
			return err
		}
	}
}

func isNaming(what string) bool { return strings.HasPrefix(what, "name ") }

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
// beside it on its CPU and in a real-time class, runs fn, and resumes it.
func (s *session) withInjector(c *ptrace.Ctl, fn func(th *ptrace.Thread) error) error {
	candidate := s.injectorCandidate()
	defer c.Realtime()()
	defer c.BesideThread(candidate)()
	th, err := s.stopInjector(c, candidate)
	if err != nil {
		return err
	}
	defer c.Detach(th)
	return fn(th)
}

// writeRegionName prepares the label "[anon:hotpatch ID]" that
// /proc/PID/maps shows for the region where the kernel supports anonymous
// names (CONFIG_ANON_VMA_NAME). The kernel copies the name, so it is
// written into the header page, which the image overwrites afterwards.
// Without kernel support, the header alone identifies a region.
func (s *session) writeRegionName(pl *plan) (uint64, bool) {
	if !anonNamesSupported() {
		return 0, false
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
		return 0, false
	}
	return at, true
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
		candidate := s.injectorCandidate()
		defer c.Realtime()()
		defer c.BesideThread(candidate)()
		var err error
		if th, err = s.stopInjector(c, candidate); err != nil {
			return err
		}
		detach = true
	}
	var firstErr error
	for _, m := range s.mapped {
		// Call frame information registered from the region must be
		// withdrawn before the region goes, or the next exception
		// would read unmapped memory.
		for i := 0; i < len(s.frames); i++ {
			f := s.frames[i]
			if f.eh < m[0] || f.eh >= m[0]+m[1] {
				continue
			}
			if _, err := c.Call(th, f.dereg, f.trap, f.eh); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("withdraw the call frame information of the region at %#x in pid %d: %w", m[0], s.p.Pid, err)
			}
			s.frames = append(s.frames[:i], s.frames[i+1:]...)
			i--
		}
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

// registerFrames registers the call frame information of the new regions
// with the target's unwinder, with one thread stopped, before any jump
// makes the patch code reachable. The frame object lives in the region,
// so the registration allocates nothing.
func (s *session) registerFrames(plans []*plan) error {
	reg, dereg, ok := s.frameFuncs()
	if !ok {
		return nil
	}
	var todo []*plan
	for _, pl := range plans {
		if pl.l.ehSize > 0 && pl.l.frameObj != 0 {
			todo = append(todo, pl)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	defer s.noteThreadStop()
	return s.tr.Do(func(c *ptrace.Ctl) error {
		return s.withInjector(c, func(th *ptrace.Thread) error {
			for _, pl := range todo {
				if _, err := c.Call(th, reg, pl.l.trapAddr, pl.l.ehAddr, pl.l.frameObj); err != nil {
					return fmt.Errorf("register the call frame information of patch %s with the unwinder of pid %d: %w", pl.hdr.ID, s.p.Pid, err)
				}
				s.frames = append(s.frames, frameReg{eh: pl.l.ehAddr, trap: pl.l.trapAddr, dereg: dereg})
				pl.hdr.EHRegistered = true
			}
			return nil
		})
	})
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
