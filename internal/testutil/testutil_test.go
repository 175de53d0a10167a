package testutil

import (
	"os"
	"strconv"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestBuildFixtureCachesAndRuns(t *testing.T) {
	b := Build{Dir: "testdata/hello", Flags: []string{"-O2", "-g"}}
	first := BuildFixture(t, b)
	second := BuildFixture(t, b)
	if first != second {
		t.Fatalf("second build of the same fixture was not cached: %s vs %s", first, second)
	}
	other := BuildFixture(t, Build{Dir: "testdata/hello", Flags: []string{"-O0"}})
	if other == first {
		t.Fatalf("different flags share one cached output %s", first)
	}
	p := Start(t, first)
	p.WaitFor(t, 0, "ready\n", 10*time.Second)
	if done, _ := p.Exited(); done {
		t.Fatal("fixture exited early")
	}
	p.Stop()
	if done, _ := p.Exited(); !done {
		t.Fatal("Stop returned before the process ended")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(p.Pid)); err == nil {
		t.Fatalf("process %d still exists after Stop", p.Pid)
	}
}

func TestRequirePtraceProbe(t *testing.T) {
	RequirePtrace(t)
	if ptraceErr != nil {
		t.Fatalf("probe failed but the test was not skipped: %v", ptraceErr)
	}
}
