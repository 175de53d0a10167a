package patcher

import (
	"runtime"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

func TestInjectorAffinityIsRestored(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "3")
	tids, err := proc.Threads(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// A thread that chose its CPU keeps its choice: confine the main
	// thread, which sleeps and so is a likely injector, to the last CPU.
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(tg.Pid, &online); err != nil {
		t.Fatal(err)
	}
	if online.Count() > 1 {
		var last unix.CPUSet
		for cpu := cpuSetBits - 1; cpu >= 0; cpu-- {
			if online.IsSet(cpu) {
				last.Set(cpu)
				break
			}
		}
		if err := unix.SchedSetaffinity(tg.Pid, &last); err != nil {
			t.Fatal(err)
		}
	}
	affinities := func() map[int]unix.CPUSet {
		m := map[int]unix.CPUSet{}
		for _, tid := range tids {
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				t.Fatalf("thread %d: %v", tid, err)
			}
			m[tid] = set
		}
		return m
	}
	before := affinities()
	patch := patchertest.Build(t, patchertest.Spec{ID: "affinity", Level: 1, Target: app,
		Source: `int compute_a(int x) { return x + 60; }`, Replace: map[string]string{"compute": "compute_a"}})
	for round := 0; round < 5; round++ {
		apply(t, tg.Pid, patch)
		off := expectAll(t, tg, len(tg.Output()), 3, "compute=61 ")
		sameAffinities(t, "after patch", before, affinities())
		unpatch(t, tg.Pid, "")
		expectAll(t, tg, off, 3, "compute=2 ")
		sameAffinities(t, "after unpatch", before, affinities())
	}
}

func sameAffinities(t *testing.T, when string, want, got map[int]unix.CPUSet) {
	t.Helper()
	for tid, set := range got {
		if w := want[tid]; set != w {
			t.Fatalf("%s: thread %d may run on %d CPUs, %d before", when, tid, set.Count(), w.Count())
		}
	}
}

func TestParseCPUList(t *testing.T) {
	set, ok := parseCPUList("0-2,5,7-8")
	if !ok || set.Count() != 6 || !set.IsSet(0) || !set.IsSet(2) || set.IsSet(3) || !set.IsSet(5) || !set.IsSet(8) {
		t.Errorf("0-2,5,7-8: %v %v", set, ok)
	}
	for _, bad := range []string{"", "x", "3-1", "1-", "-1", "99999"} {
		if _, ok := parseCPUList(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLeaveAfterwardsMovesOffTheStopCPU(t *testing.T) {
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil || mine.Count() < 2 {
		t.Skipf("this process may run on a single CPU (%v): there is nowhere to move to", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread's affinity is changed: it must die with the test.
		runtime.LockOSThread()
		var own unix.CPUSet
		if err := unix.SchedGetaffinity(0, &own); err != nil {
			t.Error(err)
			return
		}
		if own.Count() < 2 {
			t.Error("this thread may run on a single CPU, the test's thread on more")
			return
		}
		leave := leaveAfterwards()
		cpu := 0
		for !own.IsSet(cpu) {
			cpu++
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Error(err)
			return
		}
		leave()
		var got unix.CPUSet
		if err := unix.SchedGetaffinity(0, &got); err != nil {
			t.Error(err)
			return
		}
		want := own
		want.Clear(cpu)
		if got != want {
			t.Errorf("after leaving CPU %d the thread may run on %d CPUs, want the %d others", cpu, got.Count(), want.Count())
		}
	}()
	<-done
}
