package ptrace

import (
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestWakeUpsDuringRepeatedStopsAreNotLost stops the blockers over and
// over, injecting a system call into every thread each time, across the
// moment the main thread wakes them: every wake-up must arrive.
func TestWakeUpsDuringRepeatedStopsAreNotLost(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	for run := 0; run < 3; run++ {
		target := ptracetest.Start(t, exe, "300")
		target.WaitFor(t, 0, "ready\n", 10*time.Second)
		maps, err := proc.ReadMaps(target.Pid)
		if err != nil {
			t.Fatal(err)
		}
		insn, err := FindSyscallInsn(target.Pid, arch.AMD64, maps)
		if err != nil {
			t.Fatal(err)
		}
		tr := New(target.Pid)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(target.Output(), "done") {
			err := tr.Do(func(c *Ctl) error {
				if err := c.StopAll(); err != nil {
					return err
				}
				for _, th := range c.Threads() {
					if _, err := c.Syscall(th, insn, 39 /* getpid */); err != nil {
						return err
					}
				}
				return c.ResumeAll()
			})
			if err != nil {
				if strings.Contains(target.Output(), "done") {
					break
				}
				t.Fatal(err)
			}
		}
		if err := tr.Close(); err != nil && !strings.Contains(target.Output(), "done") {
			t.Fatal(err)
		}
		target.WaitFor(t, 0, "done\n", 10*time.Second)
		if out := target.Output(); strings.Contains(out, "EINTR") || strings.Contains(out, "short") || strings.Contains(out, "failed") {
			t.Fatalf("run %d: a blocking call was disturbed:\n%s", run, out)
		}
		target.Stop()
	}
}
