package patcher

import (
	"runtime/debug"
	"sync"
	"testing"
)

// TestHoldGCConcurrent: however holds interleave, the collector is back
// to its setting once the last one is released.
func TestHoldGCConcurrent(t *testing.T) {
	old := debug.SetGCPercent(77)
	defer debug.SetGCPercent(old)
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				release := holdGC()
				release()
			}
		}()
	}
	wg.Wait()
	if got := debug.SetGCPercent(77); got != 77 {
		t.Fatalf("GC percent %d after concurrent holds, want 77", got)
	}
}
