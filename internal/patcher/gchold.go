package patcher

import (
	"runtime/debug"
	"sync"
)

// gcHold keeps the garbage collector off while at least one pause is
// under way. debug.SetGCPercent is process-wide: two pauses that each
// saved and restored it would interleave (A saves 100, B saves -1, A
// restores 100, B restores -1) and leave a long-running caller such as
// the daemon, which patches many processes at once, without a collector.
var gcHold struct {
	sync.Mutex
	n     int
	saved int
}

// holdGC turns the collector off until the returned function is called
// by every holder.
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.n == 0 {
		gcHold.saved = debug.SetGCPercent(-1)
	}
	gcHold.n++
	gcHold.Unlock()
	return func() {
		gcHold.Lock()
		gcHold.n--
		if gcHold.n == 0 {
			debug.SetGCPercent(gcHold.saved)
		}
		gcHold.Unlock()
	}
}
