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
// it is, with the registers of the injected code. Resumable code (see
// scratchResumable) is made for that: the thread runs it to its end,
// every region it mapped gets its header, and the resume code takes the
// thread back to what it was doing. Code that is not resumable (no room
// for it, or a call that failed and stopped at its trap) ends in a trap,
// and the process dies of SIGTRAP, as with any code injected by ptrace;
// so does a system call injected alone by single-stepping.
type scratch struct {
	path string
	// at is the first byte written; code is where the sequence starts.
	at, code uint64
	scratchProgram
	saved []byte
	// lock is the object's file, locked so that two hotpatch runs on the
	// same process never share the room.
	lock *os.File
}

// scratchProgram is what the code in the scratch room does: calls, in
// order, where seq says it stops after each; then it registers the call
// frame information of the framed regions, region i once the code went
// past offset framedEnd[i].
type scratchProgram struct {
	calls     []setupCall
	seq       arch.SyscallCode
	framed    []*plan
	framedEnd []int
	// resumable code ends in arch.ResumeCode (seq.Done is its marker)
	// and reads the thread's registers from the block at block, written
	// in the stop: if the tool dies while the code runs, the thread
	// finishes it and goes back on its own. Its set-up also copies each
	// region's provisional header in (marked), registered or not as the
	// code leaves it, so that whatever it mapped carries a header.
	resumable bool
	block     uint64
	resumeAt  int
	marked    bool
	// done is set once the code ran to its end.
	done bool
}

// writeScratchSequence encodes calls, with the regions' names, into
// scratch room in the target and writes them there. When framed regions
// are given and their call frame information fits too, the code also
// copies it into them and registers it with fns.reg, so that mapping and
// registering take one round trip. It returns nil when no object has
// room; the caller then maps the other way.
func (s *session) writeScratchSequence(plans []*plan, calls []setupCall, fns unwinderFuncs, framed []*plan, marks map[*plan][2][]byte) (*scratch, error) {
	if s.a.EncodeSyscalls == nil || len(calls) == 0 {
		return nil, nil
	}
	if s.a.EncodeCopy == nil || s.a.EncodeCall == nil {
		framed = nil
	}
	_, canResume := s.a.EncodeResume(0, 0, 0)
	canResume = canResume && s.a.EncodeCopy != nil && (len(plans) == 0 || marks != nil)
	// The most robust layout that fits: resumable, with the frames
	// registered in the same code, then without them, then the same
	// without resuming.
	type try struct {
		framed    []*plan
		resumable bool
	}
	var tries []try
	for _, r := range []bool{true, false} {
		if r && !canResume {
			continue
		}
		if len(framed) > 0 {
			tries = append(tries, try{framed, r})
		}
		tries = append(tries, try{nil, r})
	}
	var sc *scratch
	resumable := false
	for _, t := range tries {
		// Arguments are fixed-size immediates: the layout does not
		// depend on the address.
		blob, _, _ := s.layout(0, plans, calls, fns, t.framed, t.resumable, marks)
		if sc = s.reserveScratch(uint64(len(blob))); sc != nil {
			framed, resumable = t.framed, t.resumable
			break
		}
	}
	if sc == nil {
		return nil, nil
	}
	// Tests take the other paths here.
	if err := s.opt.hit("scratch"); err != nil {
		sc.lock.Close()
		return nil, nil
	}
	if len(framed) > 0 && s.opt.hit("scratch-frames") != nil {
		framed = nil
	}
	blob, codeOff, prog := s.layout(sc.at, plans, calls, fns, framed, resumable, marks)
	sc.code, sc.scratchProgram = sc.at+codeOff, prog
	if err := s.mem.WriteAt(blob, sc.at); err != nil {
		err = fmt.Errorf("write the set-up code at %#x in %s of pid %d: %w", sc.at, sc.path, s.p.Pid, err)
		if rerr := s.releaseScratch(sc); rerr != nil {
			err = fmt.Errorf("%w (and %v)", err, rerr)
		}
		return nil, err
	}
	return sc, nil
}

// layout lays out the set-up code at at: resumable (scratchResumable) or
// ending in a trap (scratchLayout).
func (s *session) layout(at uint64, plans []*plan, calls []setupCall, fns unwinderFuncs, framed []*plan, resumable bool, marks map[*plan][2][]byte) ([]byte, uint64, scratchProgram) {
	if resumable {
		return s.scratchResumable(at, plans, calls, fns, framed, marks)
	}
	return s.scratchLayout(at, plans, calls, fns, framed)
}

// scratchResumable lays out, from at, resumable set-up code: the resume
// block, the regions' names, call frame information, provisional headers
// and traps as data, then code that
//
//  1. maps every region readable and writable, copying the call frame
//     information of the framed regions in;
//  2. registers the framed regions' frames;
//  3. copies each region's provisional header in (saying registered for
//     the framed ones), and a framed region's trap;
//  4. gives the parts their protections (text r-x, header and read-only
//     data r--; data stays rw-), and names the regions;
//  5. ends in the resume code, followed by a trap for injected calls to
//     return to.
//
// Until step 3 the tracer is there to see a failure; after it, every
// region the code mapped carries a header.
func (s *session) scratchResumable(at uint64, plans []*plan, calls []setupCall, fns unwinderFuncs, framed []*plan, marks map[*plan][2][]byte) ([]byte, uint64, scratchProgram) {
	var data []byte
	put := func(b []byte, align uint64) uint64 {
		data = append(data, make([]byte, alignUp(uint64(len(data)), align)-uint64(len(data)))...)
		addr := at + uint64(len(data))
		data = append(data, b...)
		return addr
	}
	var prog scratchProgram
	prog.resumable, prog.marked = true, len(plans) > 0
	prog.block = put(make([]byte, arch.ResumeBlockSize), 8)
	nameAt := map[*plan]uint64{}
	for _, pl := range plans {
		if n := regionName(pl); n != nil {
			nameAt[pl] = put(n, 1)
		}
	}
	isFramed := map[*plan]bool{}
	ehAt := map[*plan]uint64{}
	for _, pl := range framed {
		isFramed[pl] = true
		off := pl.l.ehAddr - pl.l.base
		ehAt[pl] = put(pl.l.image[off:off+pl.l.ehSize], 8)
	}
	hdrAt := map[*plan]uint64{}
	var trapAt uint64
	for _, pl := range plans {
		variant := 0
		if isFramed[pl] {
			variant = 1
		}
		hdrAt[pl] = put(marks[pl][variant], 8)
	}
	if len(framed) > 0 {
		trapAt = put(s.a.Trap, 1)
	}
	codeOff := alignUp(uint64(len(data)), 16)

	var code []byte
	emit := func(call setupCall) {
		one := s.a.EncodeSyscalls([]arch.SyscallCall{call.SyscallCall})
		f := -1
		if one.Failed[0] >= 0 {
			f = len(code) + one.Failed[0]
		}
		prog.calls = append(prog.calls, call)
		prog.seq.Failed = append(prog.seq.Failed, f)
		code = append(code, one.Code[:one.Trap]...)
	}
	var later []setupCall
	for _, call := range calls {
		call.Args = append([]uint64(nil), call.Args...)
		pl := call.plan
		switch {
		case call.Success == arch.SuccessArg0 && pl != nil:
			call.Args[2] = protRead | protWrite
			emit(call)
			if isFramed[pl] {
				code = append(code, s.a.EncodeCopy(pl.l.ehAddr, ehAt[pl], pl.l.ehSize)...)
			}
			for _, part := range pl.l.parts {
				if part.Prot == "r-x" {
					later = append(later, setupCall{plan: pl, what: fmt.Sprintf("protect the %s of patch %s", part.Name, pl.hdr.ID),
						SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mprotect, Args: []uint64{pl.l.base + part.Off, part.Size, protRead | protExec}}})
				}
			}
		case pl != nil && call.Nr == s.a.Sys.Mprotect && call.Args[2] == protRead|protWrite:
			// Mapped so already.
		case pl != nil && call.Nr == s.a.Sys.Prctl:
			call.Args[4] = nameAt[pl]
			later = append(later, call)
		case pl != nil:
			later = append(later, call)
		default:
			emit(call)
		}
	}
	for _, pl := range framed {
		code = append(code, s.a.EncodeCall(fns.reg, []uint64{pl.l.ehAddr, pl.l.frameObj})...)
		prog.framedEnd = append(prog.framedEnd, len(code))
	}
	prog.framed = framed
	for _, pl := range plans {
		variant := 0
		if isFramed[pl] {
			variant = 1
			code = append(code, s.a.EncodeCopy(pl.hdr.TrapAddr, trapAt, uint64(len(s.a.Trap)))...)
		}
		code = append(code, s.a.EncodeCopy(pl.l.base, hdrAt[pl], uint64(len(marks[pl][variant])))...)
	}
	for _, call := range later {
		emit(call)
	}
	prog.resumeAt = len(code)
	rc, _ := s.a.EncodeResume(at+codeOff+uint64(len(code)), prog.block, s.p.Pid)
	prog.seq.Done = len(code) + rc.Marker
	code = append(code, rc.Code...)
	prog.seq.Trap = len(code)
	code = append(code, s.a.Trap...)
	prog.seq.Code = code

	blob := make([]byte, codeOff+uint64(len(code)))
	copy(blob, data)
	copy(blob[codeOff:], code)
	return blob, codeOff, prog
}

// scratchLayout lays out, from at, the regions' names, the call frame
// information to copy into the framed regions, and the code, and returns
// them with the code's offset and what it does. A framed region is mapped
// readable and writable so that its frames can be copied in, and its text
// made executable afterwards: never writable and executable at once.
func (s *session) scratchLayout(at uint64, plans []*plan, calls []setupCall, fns unwinderFuncs, framed []*plan) ([]byte, uint64, scratchProgram) {
	var data []byte
	nameAt := map[*plan]uint64{}
	for _, pl := range plans {
		if n := regionName(pl); n != nil {
			nameAt[pl] = at + uint64(len(data))
			data = append(data, n...)
		}
	}
	ehAt := map[*plan]uint64{}
	for _, pl := range framed {
		data = append(data, make([]byte, alignUp(uint64(len(data)), 8)-uint64(len(data)))...)
		ehAt[pl] = at + uint64(len(data))
		off := pl.l.ehAddr - pl.l.base
		data = append(data, pl.l.image[off:off+pl.l.ehSize]...)
	}
	codeOff := alignUp(uint64(len(data)), 16)

	var prog scratchProgram
	copyAfter := map[int]*plan{}
	for _, call := range calls {
		call.Args = append([]uint64(nil), call.Args...)
		pl := call.plan
		_, isFramed := ehAt[pl]
		switch {
		case call.Success == arch.SuccessArg0 && isFramed:
			call.Args[2] = protRead | protWrite
			prog.calls = append(prog.calls, call)
			copyAfter[len(prog.calls)-1] = pl
			for _, part := range pl.l.parts {
				if part.Prot == "r-x" {
					prog.calls = append(prog.calls, setupCall{plan: pl, what: fmt.Sprintf("protect the %s of patch %s", part.Name, pl.hdr.ID),
						SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mprotect, Args: []uint64{pl.l.base + part.Off, part.Size, protRead | protExec}}})
				}
			}
			continue
		case call.Nr == s.a.Sys.Prctl:
			call.Args[4] = nameAt[pl]
		}
		prog.calls = append(prog.calls, call)
	}
	var code []byte
	prog.seq.Failed = make([]int, len(prog.calls))
	for i, call := range prog.calls {
		one := s.a.EncodeSyscalls([]arch.SyscallCall{call.SyscallCall})
		prog.seq.Failed[i] = -1
		if one.Failed[0] >= 0 {
			prog.seq.Failed[i] = len(code) + one.Failed[0]
		}
		code = append(code, one.Code[:one.Trap]...)
		if pl := copyAfter[i]; pl != nil {
			code = append(code, s.a.EncodeCopy(pl.l.ehAddr, ehAt[pl], pl.l.ehSize)...)
		}
	}
	for _, pl := range framed {
		code = append(code, s.a.EncodeCall(fns.reg, []uint64{pl.l.ehAddr, pl.l.frameObj})...)
		prog.framedEnd = append(prog.framedEnd, len(code))
	}
	prog.framed = framed
	end := s.a.EncodeSyscalls(nil)
	prog.seq.Trap = len(code) + end.Trap
	prog.seq.Done = len(code) + end.Done
	code = append(code, end.Code...)
	prog.seq.Code = code

	blob := make([]byte, codeOff+uint64(len(code)))
	copy(blob, data)
	copy(blob[codeOff:], code)
	return blob, codeOff, prog
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
