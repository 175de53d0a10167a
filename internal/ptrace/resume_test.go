package ptrace

import (
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestResumeCodeWithoutTracer points every thread of a program, most of
// them blocked in read, accept, epoll_wait, futex and nanosleep, at resume
// code and detaches without restoring their registers, as a tool that dies
// while it runs injected code does: each thread must find its way back on
// its own, and every blocking call complete as if nothing happened.
func TestResumeCodeWithoutTracer(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "1500")
	target.WaitFor(t, 0, "ready\n", 10*time.Second)
	maps, err := proc.ReadMaps(target.Pid)
	if err != nil {
		t.Fatal(err)
	}
	a := arch.AMD64
	insn, err := FindSyscallInsn(target.Pid, a, maps)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := proc.OpenMem(target.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	tr := New(target.Pid)
	defer tr.Close()
	err = tr.Do(func(c *Ctl) error {
		if err := c.StopAll(); err != nil {
			return err
		}
		threads := c.Threads()
		page, err := c.Syscall(threads[0], insn, a.Sys.Mmap, 0, 16384, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		inSyscall := 0
		for i, th := range threads {
			if th.Regs.InSyscall() {
				inSyscall++
			}
			block := page + uint64(i)*512
			code := block + arch.ResumeBlockSize
			rc, ok := a.EncodeResume(code, block, target.Pid)
			if !ok {
				t.Fatal("no resume code for x86-64")
			}
			if err := mem.WriteAt(append(a.EncodeResumeBlock(c.ResumeState(th), th.Tid, arch.MarkerSignals[0]), rc.Code...), block); err != nil {
				return err
			}
			work := th.Regs
			work.setPC(code)
			if err := c.SetRegs(th, &work); err != nil {
				return err
			}
		}
		if inSyscall < 5 {
			t.Errorf("only %d threads stopped inside a system call, want the 5 blockers", inSyscall)
		}
		// The tool "dies": the kernel detaches, the registers stay.
		for _, th := range threads {
			if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.Tid), 0, 0, 0, 0); errno != 0 {
				return errno
			}
			delete(c.threads, th.Tid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
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

// TestRunCodeUntilMarker runs resume code under the tracer: it stops at
// the marker, the signal is not delivered, and the thread carries on.
func TestRunCodeUntilMarker(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	target := ptracetest.Start(t, exe, "800")
	target.WaitFor(t, 0, "ready\n", 10*time.Second)
	maps, err := proc.ReadMaps(target.Pid)
	if err != nil {
		t.Fatal(err)
	}
	a := arch.AMD64
	insn, err := FindSyscallInsn(target.Pid, a, maps)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := proc.OpenMem(target.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	tr := New(target.Pid)
	defer tr.Close()
	err = tr.Do(func(c *Ctl) error {
		if err := c.StopAll(); err != nil {
			return err
		}
		threads := c.Threads()
		page, err := c.Syscall(threads[0], insn, a.Sys.Mmap, 0, 16384, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		for i, th := range threads {
			block := page + uint64(i)*512
			code := block + arch.ResumeBlockSize
			rc, _ := a.EncodeResume(code, block, target.Pid)
			if err := mem.WriteAt(append(a.EncodeResumeBlock(c.ResumeState(th), th.Tid, arch.MarkerSignals[0]), rc.Code...), block); err != nil {
				return err
			}
			regs, err := c.RunCodeUntil(th, code, code+uint64(rc.Marker), arch.MarkerSignals[0])
			if err != nil {
				return err
			}
			if regs.PC() != code+uint64(rc.Marker) {
				t.Errorf("thread %d stopped at %#x, want the marker %#x", th.Tid, regs.PC(), code+uint64(rc.Marker))
			}
			if th.pendingSig != 0 {
				t.Errorf("thread %d keeps signal %d for the program", th.Tid, th.pendingSig)
			}
		}
		return c.DetachAll()
	})
	if err != nil {
		t.Fatal(err)
	}
	target.WaitFor(t, 0, "done\n", 10*time.Second)
	out := target.Output()
	if strings.Contains(out, "EINTR") || strings.Contains(out, "short") || strings.Contains(out, "failed") {
		t.Errorf("a blocking call was disturbed:\n%s", out)
	}
}
