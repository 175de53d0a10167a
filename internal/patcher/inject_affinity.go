package patcher

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// confineBeside keeps the stopped thread tid, for the length of its stop,
// on the one CPU the tracer thread was moved to (ptrace's BesideThread).
//
// Each round trip to a stopped thread wakes it with PTRACE_CONT and waits
// for its trap. Woken while the tracer occupies its CPU, the thread is
// placed on an idle CPU instead, and the trap then wakes the tracer from
// across CPUs: two wake-ups of idle CPUs per round trip, which cost tens
// of microseconds each on a virtual machine (measured: 70 µs a round trip
// instead of 6 on this 2-CPU VM). Confined to the tracer's CPU, the thread
// runs there as soon as the tracer waits.
//
// release gives the thread back its CPUs. When releaseAfterResume is set,
// the tracer runs SCHED_FIFO on that CPU: the resumed thread cannot run
// before release (it may run nowhere else and cannot preempt the tracer),
// so releasing after the resume keeps the resume's wake-up on that CPU too
// and the program never sees the confinement. Otherwise release must come
// before the resume. A set of CPUs equal to every online CPU is given back
// as "any CPU", so that on kernels that remember the set a thread asked
// for (Linux 6.2), the thread keeps following cpuset and hotplug changes.
func confineBeside(tid int) (release func(), releaseAfterResume bool) {
	none := func() {}
	var tracer, old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &tracer); err != nil || tracer.Count() != 1 {
		return none, false
	}
	if err := unix.SchedGetaffinity(tid, &old); err != nil {
		return none, false
	}
	var both unix.CPUSet
	for cpu := 0; cpu < cpuSetBits; cpu++ {
		if tracer.IsSet(cpu) && old.IsSet(cpu) {
			both.Set(cpu)
		}
	}
	if both.Count() != 1 {
		return none, false
	}
	back := old
	if online, ok := onlineCPUs(); ok && online == old {
		back.Fill()
	}
	if err := unix.SchedSetaffinity(tid, &both); err != nil {
		return none, false
	}
	attr, err := unix.SchedGetAttr(0, 0)
	fifo := err == nil && attr.Policy == unix.SCHED_FIFO
	return func() { _ = unix.SchedSetaffinity(tid, &back) }, fifo
}

const cpuSetBits = int(unsafe.Sizeof(unix.CPUSet{})) * 8

var online struct {
	sync.Once
	set unix.CPUSet
	ok  bool
}

// onlineCPUs reads /sys/devices/system/cpu/online ("0-3,6,8-9").
func onlineCPUs() (unix.CPUSet, bool) {
	online.Do(func() {
		b, err := os.ReadFile("/sys/devices/system/cpu/online")
		if err != nil {
			return
		}
		online.set, online.ok = parseCPUList(strings.TrimSpace(string(b)))
	})
	return online.set, online.ok
}

func parseCPUList(s string) (unix.CPUSet, bool) {
	var set unix.CPUSet
	if s == "" {
		return set, false
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			return set, false
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				return set, false
			}
		}
		if first < 0 || last < first || last >= cpuSetBits {
			return set, false
		}
		for cpu := first; cpu <= last; cpu++ {
			set.Set(cpu)
		}
	}
	return set, true
}
