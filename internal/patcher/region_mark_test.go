package patcher

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

// interruptAfterMapping does what a hotpatch killed right after the stop
// that maps the regions leaves: the regions are mapped (and their call
// frame information registered), the image is not written, and nothing
// rolls back. Where scratch is false, the scratch room is refused, so the
// mmap is injected alone.
func interruptAfterMapping(t *testing.T, pid int, p *patchfile.Patch, scratch bool) {
	t.Helper()
	killed := errors.New("killed (test)")
	opt := testOpts
	opt.fault = func(at string) error {
		switch {
		case at == "before-image":
			return killed
		case at == "scratch" && !scratch:
			return errors.New("no scratch room (test)")
		}
		return nil
	}
	unlock, err := lockProcess(pid, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	s, err := newSession(pid, opt)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := s.plan([]*patchfile.Patch{p}, &Result{})
	if err != nil || len(plans) != 1 {
		t.Fatalf("plan: %v", err)
	}
	if err := s.open(); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for _, pl := range plans {
		pl.hdr.AppliedAt = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if err := s.mapRegions(plans); !errors.Is(err, killed) {
		t.Fatalf("map: %v", err)
	}
}

// expectIncomplete checks that info lists one incomplete region with the
// patch's id, and that unpatch removes it.
func expectIncomplete(t *testing.T, pid int, id string) {
	t.Helper()
	pi, err := Info(pid)
	if err != nil {
		t.Fatal(err)
	}
	var found []PatchInfo
	for _, o := range pi.Objects {
		found = append(found, o.Patches...)
	}
	found = append(found, pi.Orphans...)
	if len(found) != 1 || found[0].ID != id || found[0].State != "incomplete" || found[0].Active {
		t.Fatalf("info lists %+v, want one incomplete region of %s", found, id)
	}
	res, err := Unpatch(pid, "", testOpts)
	if err != nil || len(res.Patches) != 1 || res.Patches[0].Status != StatusRemoved {
		t.Fatalf("unpatch of the incomplete region: %+v, %v", res, err)
	}
}

// TestInterruptedMappingIsListedAndRemoved: a hotpatch that dies between
// the stop that maps a region and the writing of its image leaves a
// region that info lists as incomplete and unpatch removes, down to the
// mappings the process had, by either way of mapping.
func TestInterruptedMappingIsListedAndRemoved(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	p := patchertest.Build(t, patchertest.Spec{ID: "cut", Level: 1, Target: app,
		Source: `int compute_c(int x) { return x + 70; }`, Replace: map[string]string{"compute": "compute_c"}})
	for _, scratch := range []bool{true, false} {
		interruptAfterMapping(t, tg.Pid, p, scratch)
		expectIncomplete(t, tg.Pid, "cut")
		if after := anonMaps(t, tg.Pid); after != before {
			t.Fatalf("scratch %v: %d anonymous mappings before, %d after unpatch", scratch, before, after)
		}
		expectAll(t, tg, len(tg.Output()), 2, "compute=2 ")
	}
	// Patching again after an interrupted run removes what it left and
	// applies the patch, rather than take the leftover for it.
	interruptAfterMapping(t, tg.Pid, p, true)
	if res := apply(t, tg.Pid, p); len(res.Patches) != 1 || res.Patches[0].Status != StatusApplied {
		t.Fatalf("apply after an interrupted run: %+v", res.Patches)
	}
	expectAll(t, tg, len(tg.Output()), 2, "compute=71 ")
	pi, err := Info(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range pi.Objects {
		for _, pa := range o.Patches {
			n++
			if pa.State != "active" {
				t.Fatalf("after the apply, info lists %+v", pa)
			}
		}
	}
	if n != 1 || len(pi.Orphans) != 0 {
		t.Fatalf("after the apply, info lists %d regions and %d orphans, want one", n, len(pi.Orphans))
	}
	unpatch(t, tg.Pid, "")
	if after := anonMaps(t, tg.Pid); after != before {
		t.Fatalf("%d anonymous mappings before, %d after", before, after)
	}
}

// TestInterruptedMappingWithFramesIsRemoved: in a C++ program the stop
// also registers the region's call frame information with libgcc; the
// provisional header records it, so that unpatch withdraws it before
// unmapping and the program's exceptions keep working.
func TestInterruptedMappingWithFramesIsRemoved(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxxthrows", Flags: []string{"-O2"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "throw=1 parse=-1\n", 10*time.Second)
	before := anonMaps(t, tg.Pid)
	p := throwingPatch(t, exe, "cutthrows", -5)
	for _, scratch := range []bool{true, false} {
		interruptAfterMapping(t, tg.Pid, p, scratch)
		expectIncomplete(t, tg.Pid, "cutthrows")
		off := tg.WaitFor(t, len(tg.Output()), "throw=1 parse=-1\n", 5*time.Second)
		tg.WaitFor(t, off, "throw=1 parse=-1\n", 5*time.Second)
	}
	expectThrowerIntact(t, tg, before)
}

// BenchmarkMarkRegion measures what the provisional header adds to the
// stop that maps a region: writing it, encoded beforehand, through
// /proc/PID/mem into a mapped region of a live target.
func BenchmarkMarkRegion(b *testing.B) {
	testutil.RequirePtrace(b)
	app := testutil.BuildFixture(b, testutil.Build{Dir: "testdata/turns", Name: "turns-bench", Flags: []string{"-O2", "-pthread"}})
	tg := testutil.Start(b, app)
	tg.WaitFor(b, 0, "ready\n", 10*time.Second)
	p := patchertest.Build(b, patchertest.Spec{ID: "mark", Level: 1, Target: app,
		Source: `int alpha_m(void) { return 3; }`, Replace: map[string]string{"alpha": "alpha_m"}})
	s, err := newSession(tg.Pid, testOpts)
	if err != nil {
		b.Fatal(err)
	}
	plans, err := s.plan([]*patchfile.Patch{p}, &Result{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.open(); err != nil {
		b.Fatal(err)
	}
	defer s.close()
	if err := s.mapRegions(plans); err != nil {
		b.Fatal(err)
	}
	marks, err := provisionalHeaders(plans)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.markMapped(plans, marks, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := s.rollbackMapped(nil); err != nil {
		b.Fatal(err)
	}
}

// TestToolDeathInsideTheMappingStop leaves the thread that maps a region
// as a tool killed in the middle of that stop does: pointed at the set-up
// code, with no tracer to restore its registers. The thread runs the code
// to its end and goes back to what it was doing; the region it mapped
// carries its provisional header, so info lists it and unpatch removes
// it; the program runs on as before.
func TestToolDeathInsideTheMappingStop(t *testing.T) {
	t.Parallel()
	for _, cxx := range []bool{false, true} {
		var tg *ptracetest.Target
		var p *patchfile.Patch
		var healthy func(from int) int
		if cxx {
			testutil.RequirePtrace(t)
			exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxxthrows", Flags: []string{"-O2"}})
			tg = ptracetest.Start(t, exe)
			tg.WaitFor(t, 0, "throw=1 parse=-1\n", 10*time.Second)
			p = throwingPatch(t, exe, "diethrows", -4)
			healthy = func(from int) int {
				off := tg.WaitFor(t, from, "throw=1 parse=-1\n", 5*time.Second)
				return tg.WaitFor(t, off, "throw=1 parse=-1\n", 5*time.Second)
			}
		} else {
			app, _ := fixture(t, true)
			tg = startApp(t, app, "2")
			p = patchertest.Build(t, patchertest.Spec{ID: "die", Level: 1, Target: app,
				Source: `int compute_d(int x) { return x + 50; }`, Replace: map[string]string{"compute": "compute_d"}})
			healthy = func(from int) int { return expectAll(t, tg, from, 2, "compute=2 ") }
		}
		before := anonMaps(t, tg.Pid)
		s, err := newSession(tg.Pid, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		plans, err := s.plan([]*patchfile.Patch{p}, &Result{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.open(); err != nil {
			t.Fatal(err)
		}
		unwinder, withFrames := s.frameRegistration(plans)
		marks, err := provisionalHeaders(plans)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := s.writeScratchSequence(plans, s.setupCalls(plans), unwinder, withFrames, marks)
		if err != nil || sc == nil || !sc.resumable {
			t.Fatalf("no resumable set-up code (%v)", err)
		}
		if cxx && len(sc.framed) != 1 {
			t.Fatalf("the frames are not registered by the set-up code")
		}
		err = s.tr.Do(func(c *ptrace.Ctl) error {
			th, err := s.stopInjector(c, s.injectorCandidate())
			if err != nil {
				return err
			}
			s.readSignalHandlers()
			blocked, err := c.BlockedSignals(th)
			if err != nil {
				return err
			}
			sig := s.markerSignal(blocked)
			if sig == 0 {
				return fmt.Errorf("thread %d blocks every marker signal", th.Tid)
			}
			if err := s.mem.WriteAt(s.a.EncodeResumeBlock(c.ResumeState(th), th.Tid, sig), sc.block); err != nil {
				return err
			}
			work := th.Regs
			work.Raw().Rip, work.Raw().Orig_rax = sc.code, ^uint64(0)
			if err := c.SetRegs(th, &work); err != nil {
				return err
			}
			// The tool dies here: the kernel detaches the thread as it is.
			return unix.PtraceDetach(th.Tid)
		})
		if err != nil {
			t.Fatal(err)
		}
		s.close()
		sc.lock.Close()
		healthy(len(tg.Output()))
		expectIncomplete(t, tg.Pid, p.ID)
		healthy(len(tg.Output()))
		if after := anonMaps(t, tg.Pid); after != before {
			t.Fatalf("C++ %v: %d anonymous mappings before, %d after", cxx, before, after)
		}
		if !tg.Alive() {
			t.Fatalf("C++ %v: the target died", cxx)
		}
	}
}

// TestMarkerSignalWhenSignalsAreBlocked patches programs whose threads
// block SIGURG, or every signal: the resumable code ends on another marker
// signal, or, with all blocked, in a trap, and the patch applies and comes
// off either way.
func TestMarkerSignalWhenSignalsAreBlocked(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/masked", Flags: []string{"-O2", "-pthread"}})
	for _, mode := range []string{"urg", "all"} {
		tg := ptracetest.Start(t, exe, mode)
		tg.WaitFor(t, 0, "ready\n", 10*time.Second)
		s := &session{p: &Process{Pid: tg.Pid, MemPid: tg.Pid}}
		s.readSignalHandlers()
		m, err := proc.ThreadSignals(tg.Pid, tg.Pid)
		if err != nil {
			t.Fatal(err)
		}
		want := 28 // SIGWINCH, the next marker signal
		if mode == "all" {
			want = 0
		}
		if got := s.markerSignal(m.Blocked); got != want {
			t.Fatalf("%s: marker signal %d, want %d", mode, got, want)
		}
		before := anonMaps(t, tg.Pid)
		p := patchertest.Build(t, patchertest.Spec{ID: "masked-" + mode, Level: 1, Target: exe,
			Source: `int value_m(void) { return 9; }`, Replace: map[string]string{"value": "value_m"}})
		apply(t, tg.Pid, p)
		off := tg.WaitFor(t, len(tg.Output()), "value=9\n", 5*time.Second)
		unpatch(t, tg.Pid, "")
		tg.WaitFor(t, off, "value=1\n", 5*time.Second)
		if after := anonMaps(t, tg.Pid); after != before || !tg.Alive() {
			t.Fatalf("%s: %d anonymous mappings before, %d after; alive %v", mode, before, after, tg.Alive())
		}
	}
}
