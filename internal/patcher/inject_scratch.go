package patcher

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// scratch is room in the target for the code that maps the regions: the
// tail of the last page of an executable segment, past the segment's end
// (p_memsz). The kernel maps whole pages, so those bytes are mapped
// executable, but no function lies there and nothing branches there, so
// no thread but the one we point at it runs them. A write through
// /proc/PID/mem gives the process a private copy of that page; the bytes
// found there are saved and written back after the thread resumed.
//
// Running the whole sequence (mmap, its check, the mprotects, the naming)
// from there takes one round trip to the stopped thread; without it the
// mmap must run alone first, since the region that would hold the rest
// does not exist yet.
//
// If the tool dies before or after the stop, the code stays in place: it
// is unreachable, and the next run saves and restores whatever it finds
// there. If it dies during the stop, the kernel resumes the thread where
// it is, with the registers of the injected code, and the process dies of
// SIGTRAP or SIGSEGV, as with any code injected by ptrace (a system call
// injected by single-stepping has the same window).
type scratch struct {
	path string
	// at is the first byte written; code is where the sequence starts.
	at, code uint64
	seq      arch.SyscallCode
	saved    []byte
	// lock is the object's file, locked so that two hotpatch runs on the
	// same process never share the room.
	lock *os.File
}

// writeScratchSequence encodes calls, with the regions' names, and writes
// them into scratch room in the target. It returns nil when no object has
// room; the caller then maps the other way.
func (s *session) writeScratchSequence(plans []*plan, calls []setupCall) (*scratch, error) {
	if s.a.EncodeSyscalls == nil || len(calls) == 0 {
		return nil, nil
	}
	var names []byte
	nameOff := map[*plan]uint64{}
	for _, pl := range plans {
		if n := regionName(pl); n != nil {
			nameOff[pl] = uint64(len(names))
			names = append(names, n...)
		}
	}
	codeOff := alignUp(uint64(len(names)), 16)
	// Arguments are fixed-size immediates: the length does not depend
	// on where the names land.
	size := codeOff + uint64(len(s.a.EncodeSyscalls(syscallCalls(calls)).Code))
	sc := s.reserveScratch(size)
	if sc == nil {
		return nil, nil
	}
	if err := s.opt.hit("scratch"); err != nil {
		// A test's way to take the other path.
		sc.lock.Close()
		return nil, nil
	}
	sc.code = sc.at + codeOff
	for i := range calls {
		if calls[i].Nr == s.a.Sys.Prctl {
			calls[i].Args[4] = sc.at + nameOff[calls[i].plan]
		}
	}
	sc.seq = s.a.EncodeSyscalls(syscallCalls(calls))
	blob := make([]byte, size)
	copy(blob, names)
	copy(blob[codeOff:], sc.seq.Code)
	if err := s.mem.WriteAt(blob, sc.at); err != nil {
		err = fmt.Errorf("write the set-up code at %#x in %s of pid %d: %w", sc.at, sc.path, s.p.Pid, err)
		if rerr := s.releaseScratch(sc); rerr != nil {
			err = fmt.Errorf("%w (and %v)", err, rerr)
		}
		return nil, err
	}
	return sc, nil
}

// reserveScratch finds size bytes of scratch room in an object that stays
// mapped as long as the process lives (the executable, then the C library
// and the dynamic linker: a library that dlclose can unmap would not do),
// locks it and saves its bytes.
func (s *session) reserveScratch(size uint64) *scratch {
	for _, o := range s.p.Objects {
		if !o.Main && !isPermanentLibrary(o.Path) {
			continue
		}
		at, m, ok := scratchRoom(o, s.p.Maps, size)
		if !ok {
			continue
		}
		lock, ok := lockObject(s.p.MemPid, m)
		if !ok {
			continue
		}
		saved := make([]byte, size)
		if err := s.mem.ReadAt(saved, at); err != nil {
			lock.Close()
			continue
		}
		return &scratch{path: o.Path, at: at, saved: saved, lock: lock}
	}
	return nil
}

// releaseScratch writes back the bytes the scratch room held and unlocks it.
func (s *session) releaseScratch(sc *scratch) error {
	defer sc.lock.Close()
	if err := s.mem.WriteAt(sc.saved, sc.at); err != nil {
		return fmt.Errorf("restore %d bytes at %#x in %s of pid %d after mapping: %w", len(sc.saved), sc.at, sc.path, s.p.Pid, err)
	}
	return nil
}

// isPermanentLibrary reports whether path names the C library or the
// dynamic linker, which no process unloads.
func isPermanentLibrary(path string) bool {
	base := filepath.Base(path)
	return strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "libc-") || strings.HasPrefix(base, "ld-linux")
}

// scratchRoom returns the address of size bytes, 16-aligned, between the
// end of an executable segment of o and the end of its last page, and the
// mapping that holds them. The room must lie in a private, read-execute
// mapping of o's file (not remapped, say, onto huge pages), and no other
// segment of o may share that page.
func scratchRoom(o *Object, maps []proc.Mapping, size uint64) (uint64, proc.Mapping, bool) {
	loads := o.File.Loads
	for i, l := range loads {
		if l.Flags&elf.PF_X == 0 || l.Memsz == 0 {
			continue
		}
		end := o.Bias + l.Vaddr + l.Memsz
		pageEnd := alignUp(end, pageSize)
		at := alignUp(end, 16)
		if at+size > pageEnd {
			continue
		}
		shared := false
		for j, other := range loads {
			start := o.Bias + other.Vaddr
			if j != i && start&^(pageSize-1) < pageEnd && alignUp(start+other.Memsz, pageSize) > end {
				shared = true
			}
		}
		if shared {
			continue
		}
		for _, m := range maps {
			if m.Start <= at && at+size <= m.End && m.Perms.Exec && !m.Perms.Write && !m.Perms.Shared &&
				m.IsFile() && m.Path == o.Path {
				return at, m, true
			}
		}
	}
	return 0, proc.Mapping{}, false
}

// lockObject takes an exclusive lock on the file behind m without
// waiting, or reports that another run holds it.
func lockObject(pid int, m proc.Mapping) (*os.File, bool) {
	for _, p := range []string{proc.MappedFile(pid, m), filepath.Join(fmt.Sprintf("/proc/%d/root", pid), m.Path)} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, false
		}
		return f, true
	}
	return nil, false
}
