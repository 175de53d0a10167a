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

// leaveAfterwards returns a function that moves the tracer thread off the
// CPU it was moved to for a stop, while it still runs there in a
// real-time class, to the others it may run on. Staying, the tracer would
// go on with the operation's work on that CPU once its real-time class is
// dropped, and a busy thread just resumed there would wait for its turn.
func leaveAfterwards() func() {
	var own unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		return func() {}
	}
	return func() {
		var here unix.CPUSet
		if err := unix.SchedGetaffinity(0, &here); err != nil || here.Count() != 1 {
			return
		}
		away := own
		for cpu := 0; cpu < cpuSetBits; cpu++ {
			if here.IsSet(cpu) {
				away.Clear(cpu)
			}
		}
		if away.Count() > 0 {
			_ = unix.SchedSetaffinity(0, &away)
		}
	}
}

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
