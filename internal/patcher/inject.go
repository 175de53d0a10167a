package patcher

import (
	"bytes"
	"fmt"
	"sync"
	"unsafe"

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
