package ptrace

import (
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestResumeOneStopsAtSyscalls resumes single blocked threads with
// PTRACE_SYSCALL while the others stay stopped, collects their system
// call stops with Poll, and checks that the program saw nothing: every
// blocking call completes normally.
func TestResumeOneStopsAtSyscalls(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "300")
	target.WaitFor(t, 0, "ready\n", 10*time.Second)
	tr := New(target.Pid)
	defer tr.Close()
	err := tr.Do(func(c *Ctl) error {
		if err := c.StopAll(); err != nil {
			return err
		}
		// The main thread wakes the others after 300 ms: each then
		// leaves its blocking call, which is a system call stop.
		seen := 0
		if main, ok := c.Thread(target.Pid); ok {
			if err := c.ResumeOne(main, false); err != nil {
				return err
			}
		}
		for _, th := range c.Threads() {
			if th.Tid == target.Pid || !th.Regs.InSyscall() {
				continue
			}
			if err := c.ResumeOne(th, true); err != nil {
				return err
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				stopped, err := c.Poll(th)
				if err != nil {
					return err
				}
				if stopped {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("thread %d made no system call stop in 5 s", th.Tid)
					break
				}
				time.Sleep(time.Millisecond)
			}
			if th.Stopped {
				if !th.SyscallStop {
					t.Errorf("thread %d stopped, but not at a system call", th.Tid)
				}
				seen++
			}
		}
		if seen == 0 {
			t.Error("no thread stopped at a system call")
		}
		return c.DetachAll()
	})
	if err != nil {
		t.Fatal(err)
	}
	target.WaitFor(t, 0, "done\n", 10*time.Second)
	out := target.Output()
	if strings.Contains(out, "EINTR") || strings.Contains(out, "failed") || strings.Contains(out, "short") {
		t.Errorf("a blocking call was disturbed by the system call stops:\n%s", out)
	}
}
