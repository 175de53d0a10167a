// Package ptracetest starts fixture programs that a test may trace.
//
// A tracer must not be the parent that os/exec waits for: Go's child
// waiter (waitid on the pidfd) would consume the target's ptrace stops,
// since the kernel reports a tracee's stops to any waiting thread of its
// tracer. So targets are started through a shell that exits at once, and
// the test process becomes their subreaper to collect them when they die.
package ptracetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes orphaned descendants children of this process, so
// that Stop can reap them. Call it from TestMain.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Target is a running fixture that is not a child of the tracer's waiter.
type Target struct {
	Pid int
	out string
}

// Start runs path with args, its output going to a file, and registers a
// cleanup that kills it.
func Start(t testing.TB, path string, args ...string) *Target {
	t.Helper()
	out := filepath.Join(t.TempDir(), "output")
	cmd := exec.Command("/bin/sh", append([]string{"-c", `"$0" "$@" >"$HOTPATCH_TARGET_OUT" 2>&1 </dev/null & echo $!`, path}, args...)...)
	cmd.Env = append(os.Environ(), "HOTPATCH_TARGET_OUT="+out)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("start %s: shell printed %q", path, b)
	}
	p := &Target{Pid: pid, out: out}
	t.Cleanup(p.Stop)
	return p
}

// Stop kills the target and reaps it.
func (p *Target) Stop() {
	if p.Pid <= 0 {
		return
	}
	_ = unix.Kill(p.Pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for i := 0; i < 500; i++ {
		wpid, err := unix.Wait4(p.Pid, &ws, unix.WNOHANG|unix.WALL, nil)
		if err != nil || wpid == p.Pid {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	p.Pid = -p.Pid
}

// Output is everything the target printed so far.
func (p *Target) Output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// Alive reports whether any thread of the target still runs (a main
// thread that called pthread_exit is a zombie while the others go on).
func (p *Target) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.Pid))
	if err != nil {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", p.Pid, task.Name()))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' {
			return true
		}
	}
	return false
}

// WaitFor waits until the output after byte offset from contains want and
// returns the offset just past it; it fails the test after timeout.
func (p *Target) WaitFor(t testing.TB, from int, want string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.Output()
		if from > len(out) {
			from = len(out)
		}
		if i := strings.Index(out[from:], want); i >= 0 {
			return from + i + len(want)
		}
		if !p.Alive() {
			t.Fatalf("process %d ended before printing %q; output:\n%s", p.Pid, want, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not print %q within %v; output:\n%s", p.Pid, want, timeout, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
