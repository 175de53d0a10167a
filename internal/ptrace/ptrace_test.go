package ptrace

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if err := ptracetest.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "become subreaper:", err)
		os.Exit(1)
	}
	testutil.Main(m)
}

// threadState reads the state letter of one thread ('t' is a ptrace stop).
func threadState(pid, tid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return s[i+2]
}

func TestStopAllCatchesThreadsCreatedMeanwhile(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/spawner", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe)
	target.WaitFor(t, 0, "ready\n", 10*time.Second)
	tr := New(target.Pid)
	defer tr.Close()
	for round := 0; round < 30; round++ {
		err := tr.Do(func(c *Ctl) error {
			if err := c.StopAll(); err != nil {
				return err
			}
			// Every thread the kernel lists is traced by us and stopped.
			tids, err := proc.Threads(target.Pid)
			if err != nil {
				return err
			}
			for _, tid := range tids {
				th, ok := c.Thread(tid)
				if !ok {
					st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", target.Pid, tid))
					return fmt.Errorf("round %d: thread %d is not traced (tracer thread %d); its status:\n%s", round, tid, c.osTid, st)
				}
				if !th.Stopped || threadState(target.Pid, tid) != 't' {
					return fmt.Errorf("round %d: thread %d runs (state %c)", round, tid, threadState(target.Pid, tid))
				}
			}
			if round%2 == 0 {
				return c.ResumeAll()
			}
			return c.DetachAll()
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if st, err := proc.ReadStatus(target.Pid); err != nil || st.TracerPid != 0 {
		t.Fatalf("after Close: status %+v, %v", st, err)
	}
	off := target.WaitFor(t, 0, "spawned", 5*time.Second)
	target.WaitFor(t, off, "spawned", 5*time.Second)
}

func TestInjectedSyscallsLeaveBlockingCallsIntact(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "1500")
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
	defer tr.Close()
	sys := arch.AMD64.Sys
	var mapped []uint64
	for round := 0; round < 5; round++ {
		err := tr.Do(func(c *Ctl) error {
			if err := c.StopAll(); err != nil {
				return err
			}
			inSyscall := 0
			for _, th := range c.Threads() {
				if th.Regs.InSyscall() {
					inSyscall++
				}
				// The worst case: every thread, most of them inside a
				// blocking call, runs an injected mmap and munmap.
				addr, err := c.Syscall(th, insn, sys.Mmap, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
				if err != nil {
					return err
				}
				mapped = append(mapped, addr)
				if _, err := c.Syscall(th, insn, sys.Munmap, addr, 4096); err != nil {
					return err
				}
				got, err := c.Syscall(th, insn, 39 /* getpid */)
				if err != nil {
					return err
				}
				if int(got) != target.Pid {
					return fmt.Errorf("injected getpid returned %d in pid %d", got, target.Pid)
				}
			}
			if inSyscall < 5 {
				return fmt.Errorf("only %d threads stopped inside a system call, want the 5 blockers", inSyscall)
			}
			if round == 4 {
				return c.DetachAll()
			}
			return c.ResumeAll()
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(mapped) == 0 || mapped[0] == 0 {
		t.Fatal("no injected mmap returned an address")
	}
	target.WaitFor(t, 0, "done\n", 10*time.Second)
	out := target.Output()
	for _, want := range []string{"read ok", "accept ok", "epoll_wait ok", "futex ok", "nanosleep ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EINTR") || strings.Contains(out, "short") || strings.Contains(out, "failed") {
		t.Errorf("a blocking call was disturbed:\n%s", out)
	}
}

func TestInjectedSyscallErrorIsTyped(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "100000")
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
	defer tr.Close()
	err = tr.Do(func(c *Ctl) error {
		th, err := c.StopOne(target.Pid)
		if err != nil {
			return err
		}
		_, err = c.Syscall(th, insn, arch.AMD64.Sys.Munmap, 1, 4096) // unaligned: EINVAL
		return err
	})
	var se *SyscallError
	if !errors.As(err, &se) || se.Errno != unix.EINVAL {
		t.Fatalf("munmap of an unaligned address: %v, want EINVAL", err)
	}
}

func TestSeizeErrorsGiveAdvice(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "100000")
	target.WaitFor(t, 0, "ready\n", 10*time.Second)
	first := New(target.Pid)
	defer first.Close()
	if err := first.Do(func(c *Ctl) error { return c.SeizeAll() }); err != nil {
		t.Fatal(err)
	}
	// A second tracer is refused, and told who traces the process.
	second := New(target.Pid)
	defer second.Close()
	err := second.Do(func(c *Ctl) error { return c.SeizeAll() })
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "already traced by pid") {
		t.Fatalf("second tracer: %v", err)
	}
	// A process that dies while traced is let go without hanging.
	target.Stop()
	if err := first.Close(); err != nil && !errors.Is(err, proc.ErrNoProcess) {
		t.Fatalf("close the tracer of a dead process: %v", err)
	}
	// A process that is gone says so.
	gone := New(-target.Pid)
	defer gone.Close()
	if err := gone.Do(func(c *Ctl) error { return c.StopAll() }); !errors.Is(err, proc.ErrNoProcess) {
		t.Fatalf("stopping a gone process: %v", err)
	}
}
