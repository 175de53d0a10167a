package patcher

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

// scratchTails reads, for the objects whose scratch room the patcher may
// use, the bytes between the end of each executable segment and the end
// of its page.
func scratchTails(t *testing.T, pid int) map[uint64][]byte {
	t.Helper()
	p, err := Inspect(pid)
	if err != nil {
		t.Fatal(err)
	}
	tails := map[uint64][]byte{}
	for _, o := range p.Objects {
		if !o.Main && !isPermanentLibrary(o.Path) {
			continue
		}
		for _, l := range o.File.Loads {
			if l.Flags&elf.PF_X == 0 {
				continue
			}
			end := o.Bias + l.Vaddr + l.Memsz
			b := make([]byte, alignUp(end, pageSize)-end)
			if err := proc.ReadMem(pid, end, b); err != nil {
				t.Fatalf("read the tail of %s at %#x: %v", o.Path, end, err)
			}
			tails[end] = b
		}
	}
	if len(tails) == 0 {
		t.Fatalf("pid %d: no executable segment found in the executable or the C library", pid)
	}
	return tails
}

func sameTails(t *testing.T, when string, want, got map[uint64][]byte) {
	t.Helper()
	for at, w := range want {
		if !bytes.Equal(w, got[at]) {
			t.Errorf("%s: the %d bytes at %#x changed:\n% x\nwant\n% x", when, len(w), at, got[at], w)
		}
	}
}

// checkProtections compares the protection of every part of every region
// in pid with the one its header records.
func checkProtections(t *testing.T, pid int) {
	t.Helper()
	maps := mustMaps(t, pid)
	regions, err := FindRegions(pid, maps)
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) == 0 {
		t.Fatalf("pid %d: no region found", pid)
	}
	for _, r := range regions {
		for _, part := range r.hdr.Parts {
			at := r.hdr.Base + part.Off
			found := false
			for _, m := range maps {
				if m.Contains(at) {
					found = true
					if got := m.Perms.String()[:3]; got != part.Prot || m.End < at+part.Size {
						t.Errorf("patch %s: the %s at %#x is mapped %s up to %#x, want %s up to %#x", r.hdr.ID, part.Name, at, got, m.End, part.Prot, at+part.Size)
					}
				}
			}
			if !found {
				t.Errorf("patch %s: the %s at %#x is not mapped", r.hdr.ID, part.Name, at)
			}
		}
	}
}

// scratchHook counts the applies and unpatches that reached the scratch
// room, and with refuse makes them take the other way.
func scratchHook(hits *atomic.Int32, refuse bool) Options {
	opt := testOpts
	opt.fault = func(point string) error {
		if point != "scratch" {
			return nil
		}
		hits.Add(1)
		if refuse {
			return errors.New("no scratch room (test)")
		}
		return nil
	}
	return opt
}

func TestScratchRoomIsRestoredAfterPatchAndUnpatch(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	// Whatever the room holds is given back byte for byte, zeros or not:
	// plant a pattern in the executable's room first.
	p, err := Inspect(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	exe := p.Objects[0]
	need := uint64(64)
	at, _, ok := scratchRoom(exe, p.Maps, need)
	if !ok {
		t.Skipf("%s leaves fewer than %d bytes after its executable segment: nothing to plant a pattern in (the other tests cover the other way)", app, need)
	}
	mem, err := proc.OpenMem(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	pattern := bytes.Repeat([]byte{0xa5, 0x5a, 0x00, 0xff}, int(alignUp(at, pageSize)-at)/4)
	if err := mem.WriteAt(pattern, at); err != nil {
		t.Fatal(err)
	}
	before := scratchTails(t, tg.Pid)

	var hits atomic.Int32
	opt := scratchHook(&hits, false)
	patch := patchertest.Build(t, patchertest.Spec{ID: "scratch", Level: 1, Target: app,
		Source: `int compute_s(int x) { return x + 40; }`, Replace: map[string]string{"compute": "compute_s"}})
	if _, err := Apply(tg.Pid, []*patchfile.Patch{patch}, opt); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("the apply reached the scratch room %d times, want 1", hits.Load())
	}
	off := expectAll(t, tg, len(tg.Output()), 2, "compute=41 ")
	checkProtections(t, tg.Pid)
	sameTails(t, "after patch", before, scratchTails(t, tg.Pid))

	if _, err := Unpatch(tg.Pid, "", opt); err != nil {
		t.Fatalf("unpatch: %v", err)
	}
	if hits.Load() != 2 {
		t.Fatalf("the unpatch did not reach the scratch room")
	}
	expectAll(t, tg, off, 2, "compute=2 ")
	sameTails(t, "after unpatch", before, scratchTails(t, tg.Pid))
	if regions, _ := FindRegions(tg.Pid, mustMaps(t, tg.Pid)); len(regions) != 0 {
		t.Errorf("%d regions left after unpatch", len(regions))
	}
}

func TestPatchWithoutScratchRoom(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := scratchTails(t, tg.Pid)
	anon := anonMaps(t, tg.Pid)
	var hits atomic.Int32
	opt := scratchHook(&hits, true)
	patch := patchertest.Build(t, patchertest.Spec{ID: "noscratch", Level: 1, Target: app,
		Source: `int compute_n(int x) { return x + 50; }`, Replace: map[string]string{"compute": "compute_n"}})
	for round := 0; round < 3; round++ {
		if _, err := Apply(tg.Pid, []*patchfile.Patch{patch}, opt); err != nil {
			t.Fatalf("round %d: apply: %v", round, err)
		}
		off := expectAll(t, tg, len(tg.Output()), 2, "compute=51 ")
		checkProtections(t, tg.Pid)
		if _, err := Unpatch(tg.Pid, "", opt); err != nil {
			t.Fatalf("round %d: unpatch: %v", round, err)
		}
		expectAll(t, tg, off, 2, "compute=2 ")
	}
	if hits.Load() == 0 {
		t.Fatal("the scratch room was never offered: the test did not exercise the other way")
	}
	sameTails(t, "without the scratch room", before, scratchTails(t, tg.Pid))
	if after := anonMaps(t, tg.Pid); after != anon {
		t.Errorf("%d anonymous mappings before, %d after", anon, after)
	}
}

func TestRollbackAfterInjectedFaultsWithoutScratchRoom(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	orig := readCode(t, tg.Pid, app, "compute")
	p := patchertest.Build(t, patchertest.Spec{ID: "fault2", Level: 1, Target: app,
		Source: `int compute_f(int x) { return x + 70; }`, Replace: map[string]string{"compute": "compute_f"}})
	for _, point := range []string{"after-mmap", "after-first-jump"} {
		injected := errors.New("injected fault at " + point)
		opt := testOpts
		opt.fault = func(at string) error {
			if at == point || at == "scratch" {
				return injected
			}
			return nil
		}
		if _, err := Apply(tg.Pid, []*patchfile.Patch{p}, opt); !errors.Is(err, injected) {
			t.Fatalf("%s: %v", point, err)
		}
		if got := readCode(t, tg.Pid, app, "compute"); !bytes.Equal(got, orig) {
			t.Errorf("%s: compute not restored: % x", point, got)
		}
		if after := anonMaps(t, tg.Pid); after != before {
			t.Errorf("%s: %d anonymous mappings before, %d after", point, before, after)
		}
		expectAll(t, tg, len(tg.Output()), 2, "compute=2 ")
	}
}

// TestRollbackWithdrawsRegisteredFrames fails applies after the region
// was mapped and its call frame information registered, in the same stop:
// the rollback must withdraw the registration before unmapping, or the
// program's next throw would read the unmapped frame object.
func TestRollbackWithdrawsRegisteredFrames(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxxthrows", Flags: []string{"-O2"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "throw=1 parse=-1\n", 10*time.Second)
	before := anonMaps(t, tg.Pid)
	p := throwingPatch(t, exe, "throws2", -9)
	for _, refuseScratch := range []bool{false, true} {
		injected := errors.New("injected fault after the mapping")
		opt := testOpts
		opt.fault = func(at string) error {
			if at == "after-mmap" || (refuseScratch && at == "scratch") {
				return injected
			}
			return nil
		}
		if _, err := Apply(tg.Pid, []*patchfile.Patch{p}, opt); !errors.Is(err, injected) {
			t.Fatalf("scratch refused %v: %v", refuseScratch, err)
		}
		if after := anonMaps(t, tg.Pid); after != before {
			t.Errorf("scratch refused %v: %d anonymous mappings before, %d after", refuseScratch, before, after)
		}
		// Several throws after the rollback.
		off := tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-1\n", 5*time.Second)
		tg.WaitFor(t, off, "throw=1 parse=-1\n", 5*time.Second)
	}
	apply(t, tg.Pid, p)
	off := tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-9\n", 5*time.Second)
	tg.WaitFor(t, off, "throw=1 parse=-9\n", 5*time.Second)
	unpatch(t, tg.Pid, "")
	off = tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-1\n", 5*time.Second)
	tg.WaitFor(t, off, "throw=1 parse=-1\n", 5*time.Second)
	expectThrowerIntact(t, tg, before)
}

// TestFrameRegistrationPaths applies a patch whose code throws and catches
// an exception to a C++ program that throws all the time, with its call
// frame information registered by each way there is: by the code in the
// scratch room, by a call after it, and by a call after the sequence run
// from the region itself.
func TestFrameRegistrationPaths(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxxthrows", Flags: []string{"-O2"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "throw=1 parse=-1\n", 10*time.Second)
	before := anonMaps(t, tg.Pid)
	p := throwingPatch(t, exe, "paths", -8)
	for _, refuse := range []string{"", "scratch-frames", "scratch"} {
		var framesInScratch atomic.Int32
		opt := testOpts
		opt.fault = func(at string) error {
			if at == "scratch-frames" {
				framesInScratch.Add(1)
			}
			if at == refuse {
				return errors.New("refused by the test")
			}
			return nil
		}
		if _, err := Apply(tg.Pid, []*patchfile.Patch{p}, opt); err != nil {
			t.Fatalf("refusing %q: apply: %v", refuse, err)
		}
		if refuse == "" && framesInScratch.Load() != 1 {
			t.Fatalf("the call frame information did not go into the scratch room")
		}
		off := tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-8\n", 5*time.Second)
		tg.WaitFor(t, off, "throw=1 parse=-8\n", 5*time.Second)
		checkProtections(t, tg.Pid)
		regions, err := FindRegions(tg.Pid, mustMaps(t, tg.Pid))
		if err != nil || len(regions) != 1 || !regions[0].hdr.EHRegistered {
			t.Fatalf("refusing %q: the region's header does not record the registration (%v)", refuse, err)
		}
		if _, err := Unpatch(tg.Pid, "", opt); err != nil {
			t.Fatalf("refusing %q: unpatch: %v", refuse, err)
		}
		off = tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-1\n", 5*time.Second)
		tg.WaitFor(t, off, "throw=1 parse=-1\n", 5*time.Second)
	}
	expectThrowerIntact(t, tg, before)
}

// TestSetupSequenceFailures runs set-up sequences whose calls fail in a
// live process: the failure names the call and the kernel's error, and
// exactly the regions whose mmap succeeded are recorded for the rollback,
// which removes them.
func TestSetupSequenceFailures(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	s, err := newSession(tg.Pid, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.open(); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	base := freeAddress(t, s.p.Maps, 0x3000)
	mmap := func(at uint64) setupCall {
		return setupCall{what: fmt.Sprintf("map %#x", at), SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mmap, Success: arch.SuccessArg0,
			Args: []uint64{at, 0x3000, protRead | protExec, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0}}}
	}
	protect := func(at uint64) setupCall {
		return setupCall{what: fmt.Sprintf("protect %#x", at), SyscallCall: arch.SyscallCall{Nr: s.a.Sys.Mprotect, Args: []uint64{at, 0x1000, protRead}}}
	}
	exeStart := s.p.Objects[0].Start
	cases := []struct {
		name    string
		calls   []setupCall
		errno   unix.Errno
		what    string
		mapped  int
		scratch bool
	}{
		// An unaligned mprotect fails with EINVAL after the mmap: the
		// region is mapped and must be recorded.
		{"mprotect fails after the mmap", []setupCall{mmap(base), protect(base + 1)}, unix.EINVAL, "protect", 1, true},
		// The executable occupies its own address: MAP_FIXED_NOREPLACE
		// refuses, and nothing is mapped.
		{"mmap over a mapping", []setupCall{mmap(exeStart), protect(exeStart)}, unix.EEXIST, "map", 0, true},
		{"one call at a time, mprotect fails", []setupCall{mmap(base), protect(base + 1)}, unix.EINVAL, "protect", 1, false},
	}
	for _, tc := range cases {
		var sc *scratch
		if tc.scratch {
			if sc, err = s.writeScratchSequence(nil, tc.calls, unwinderFuncs{}, nil, nil); err != nil || sc == nil {
				t.Fatalf("%s: no scratch room in pid %d (%v)", tc.name, tg.Pid, err)
			}
		}
		err := s.tr.Do(func(c *ptrace.Ctl) error {
			return s.withInjector(c, func(th *ptrace.Thread) error {
				if sc != nil {
					return s.mapFromScratch(c, th, sc, unwinderFuncs{})
				}
				return s.mapOnThread(c, th, nil, tc.calls)
			})
		})
		if sc != nil {
			if rerr := s.releaseScratch(sc); rerr != nil {
				t.Fatal(rerr)
			}
		}
		var serr *ptrace.SyscallError
		if !errors.As(err, &serr) || serr.Errno != tc.errno || !strings.HasPrefix(err.Error(), tc.what) {
			t.Errorf("%s: error %v, want %v from %q", tc.name, err, tc.errno, tc.what)
		}
		if len(s.mapped) != tc.mapped {
			t.Errorf("%s: %d regions recorded for the rollback, want %d", tc.name, len(s.mapped), tc.mapped)
		}
		if tc.mapped > 0 && !mapped(mustMaps(t, tg.Pid), base) {
			t.Errorf("%s: the region recorded at %#x is not mapped", tc.name, base)
		}
		if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
			t.Fatalf("%s: rollback: %v", tc.name, err)
		}
		if mapped(mustMaps(t, tg.Pid), base) {
			t.Errorf("%s: the region at %#x is still mapped after the rollback", tc.name, base)
		}
		if !mapped(mustMaps(t, tg.Pid), exeStart) {
			t.Fatalf("%s: the executable's mapping at %#x is gone", tc.name, exeStart)
		}
	}
	expectAll(t, tg, len(tg.Output()), 2, "compute=2 ")
}

func mapped(maps []proc.Mapping, at uint64) bool {
	for _, m := range maps {
		if m.Contains(at) {
			return true
		}
	}
	return false
}

// freeAddress returns a page-aligned address with size free bytes, below
// the first mapping above 4 GiB.
func freeAddress(t *testing.T, maps []proc.Mapping, size uint64) uint64 {
	t.Helper()
	prevEnd := uint64(1 << 32)
	for _, m := range maps {
		if m.End <= prevEnd {
			continue
		}
		if m.Start >= prevEnd+2*size {
			return m.Start - 2*size
		}
		prevEnd = m.End
	}
	t.Fatal("no free address")
	return 0
}

func TestScratchRoom(t *testing.T) {
	page := pageSize
	exec := elfobj.Segment{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Vaddr: page, Memsz: page - 0x200}
	data := elfobj.Segment{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W, Vaddr: 3 * page, Memsz: 0x100}
	const bias = 0x400000
	obj := func(loads ...elfobj.Segment) *Object {
		return &Object{Path: "/bin/prog", File: &elfobj.Object{Loads: loads}, Bias: bias}
	}
	textMap := proc.Mapping{Start: bias + page, End: bias + 2*page, Perms: proc.Perms{Read: true, Exec: true}, Inode: 7, Path: "/bin/prog"}
	end := bias + page + page - 0x200
	cases := []struct {
		name string
		o    *Object
		maps []proc.Mapping
		size uint64
		want uint64
	}{
		{"room after the text", obj(exec, data), []proc.Mapping{textMap}, 0x100, end},
		{"exactly the room", obj(exec, data), []proc.Mapping{textMap}, 0x200, end},
		{"too little room", obj(exec, data), []proc.Mapping{textMap}, 0x201, 0},
		{"segment ends on a page boundary", obj(elfobj.Segment{Type: elf.PT_LOAD, Flags: elf.PF_X, Vaddr: page, Memsz: page}), []proc.Mapping{textMap}, 1, 0},
		{"another segment shares the page", obj(exec, elfobj.Segment{Type: elf.PT_LOAD, Flags: elf.PF_R, Vaddr: 2*page - 0x80, Memsz: 0x100}), []proc.Mapping{textMap}, 0x10, 0},
		{"not mapped", obj(exec, data), nil, 0x10, 0},
		{"remapped anonymous", obj(exec, data), []proc.Mapping{{Start: textMap.Start, End: textMap.End, Perms: textMap.Perms}}, 0x10, 0},
		{"writable", obj(exec, data), []proc.Mapping{{Start: textMap.Start, End: textMap.End, Perms: proc.Perms{Read: true, Write: true, Exec: true}, Inode: 7, Path: "/bin/prog"}}, 0x10, 0},
		{"another file", obj(exec, data), []proc.Mapping{{Start: textMap.Start, End: textMap.End, Perms: textMap.Perms, Inode: 8, Path: "/bin/other"}}, 0x10, 0},
		{"data segments have none", obj(data), []proc.Mapping{textMap}, 0x10, 0},
	}
	for _, tc := range cases {
		at, _, ok := scratchRoom(tc.o, tc.maps, tc.size)
		if ok != (tc.want != 0) || at != tc.want {
			t.Errorf("%s: room at %#x (%v), want %#x", tc.name, at, ok, tc.want)
		}
	}
}
