package unwind

import (
	"os"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// captured is a 64-thread target stopped once: each thread's registers
// and a 16 KiB stack snapshot, as the patcher holds them in the pause.
type captured struct {
	space   *AddressSpace
	threads []thread
	mem     *ProcessMemory
}

func captureMany(tb testing.TB, n string) captured {
	testutil.RequirePtrace(tb)
	path := testutil.BuildFixture(tb, testutil.Build{Dir: "testdata/many", Flags: []string{"-O2", "-pthread"}})
	p := startParked(tb, path, n)
	space, _ := loadSpace(tb, p.Pid)
	threads := captureThreads(tb, p.Pid, 16<<10)
	mem, err := OpenProcessMemory(p.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { mem.Close() })
	for i := range threads {
		threads[i].snap.Fallback = mem
	}
	return captured{space: space, threads: threads, mem: mem}
}

// BenchmarkUnwind64Threads unwinds every thread of a 64-thread target
// from captured registers and stacks: the work the safety check does in
// the pause. ns/thread is the figure to watch.
func BenchmarkUnwind64Threads(b *testing.B) {
	c := captureMany(b, "64")
	buf := make([]Frame, 0, 64)
	frames := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range c.threads {
			out, err := c.space.Unwind(&c.threads[j].regs, c.threads[j].snap, buf)
			if err != nil {
				b.Fatal(err)
			}
			frames += len(out)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.threads)), "ns/thread")
	b.ReportMetric(float64(frames)/float64(b.N*len(c.threads)), "frames/thread")
}

// BenchmarkScan64Threads is the conservative fallback over the same
// stacks: every word of a 16 KiB snapshot against a few code ranges.
func BenchmarkScan64Threads(b *testing.B) {
	c := captureMany(b, "64")
	ranges := NewRanges([]CodeRange{{Start: 0x1000, End: 0x1100}, {Start: 0x555555554000, End: 0x555555555000}})
	hits := make([]Hit, 0, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range c.threads {
			hits = Scan(c.threads[j].snap, c.threads[j].snap.Addr, ranges, hits[:0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.threads)), "ns/thread")
}

// BenchmarkTableLibc is what parsing the C library's CFI costs, outside
// the pause (once per object, then cached by the patcher).
func BenchmarkTableLibc(b *testing.B) {
	o, err := elfobj.Open("/lib/x86_64-linux-gnu/libc.so.6")
	if os.IsNotExist(err) {
		b.Skipf("skipped: the system libc is not at the Debian path (%v)", err)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := TableForObject(o); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnwindAllocatesNothing holds the unwinder to its promise for the
// pause: with a frame buffer from the caller, unwinding a thread
// allocates nothing.
func TestUnwindAllocatesNothing(t *testing.T) {
	c := captureMany(t, "4")
	buf := make([]Frame, 0, 64)
	allocs := testing.AllocsPerRun(20, func() {
		for j := range c.threads {
			if _, err := c.space.Unwind(&c.threads[j].regs, c.threads[j].snap, buf); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("unwinding %d threads allocates %.1f times", len(c.threads), allocs)
	}
}
