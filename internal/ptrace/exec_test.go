package ptrace

import (
	"bytes"
	"debug/elf"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestRunToEntry seizes a shell before it execs a program, takes the
// program to its entry point and checks that it is stopped there with its
// code intact, and that it runs normally once released.
func TestRunToEntry(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "sh", "echo")
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "read x; exec "+echo+" ran to the end")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	a, err := arch.ForMachine(elf.EM_X86_64)
	if err != nil {
		t.Skipf("skipped: no arch table for this machine: %v", err)
	}
	tr := New(pid)
	defer tr.Close()
	if err := tr.Do(func(c *Ctl) error { return c.SeizeForExec(pid) }); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	var entry uint64
	err = tr.Do(func(c *Ctl) error {
		th, err := c.WaitExec(pid, 10*time.Second)
		if err != nil {
			return err
		}
		auxv, err := proc.Auxv(pid)
		if err != nil {
			return err
		}
		entry = auxv[proc.AtEntry]
		if err := c.RunToEntry(th, entry, a.Trap, 10*time.Second); err != nil {
			return err
		}
		if th.Regs.PC() != entry || !th.Stopped {
			t.Errorf("thread at %#x (stopped %v), want stopped at the entry %#x", th.Regs.PC(), th.Stopped, entry)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := proc.Exe(pid)
	if err != nil || !strings.HasSuffix(exe, "/echo") {
		t.Fatalf("stopped process runs %q (%v), want echo", exe, err)
	}
	if st := threadState(pid, pid); st != 't' {
		t.Errorf("state %q at the entry, want a ptrace stop", st)
	}
	b := make([]byte, len(a.Trap))
	if err := proc.ReadMem(pid, entry, b); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(b, a.Trap) {
		t.Error("the trap is still planted at the entry")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echo after the release: %v", err)
	}
	if got := out.String(); got != "ran to the end\n" {
		t.Errorf("echo printed %q", got)
	}
}

// TestWaitExecWithoutExec: a seized process that never execs is released
// after the timeout and keeps running.
func TestWaitExecWithoutExec(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "sleep")
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	tr := New(pid)
	defer tr.Close()
	err := tr.Do(func(c *Ctl) error {
		if err := c.SeizeForExec(pid); err != nil {
			return err
		}
		_, err := c.WaitExec(pid, 100*time.Millisecond)
		return err
	})
	if !errors.Is(err, ErrNoExec) {
		t.Fatalf("WaitExec on a process that does not exec: %v, want ErrNoExec", err)
	}
	st, err := proc.ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPid != 0 {
		t.Errorf("still traced by %d after WaitExec gave up", st.TracerPid)
	}
	if s := threadState(pid, pid); s != 'S' && s != 'R' {
		t.Errorf("state %q after the release, want running or sleeping", s)
	}
}
