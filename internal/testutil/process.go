package testutil

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a fixture program started by a test. It is killed, and its
// exit collected, when the test ends.
type Process struct {
	Cmd   *exec.Cmd
	Pid   int
	Stdin io.WriteCloser

	mu     sync.Mutex
	out    bytes.Buffer
	waited chan struct{}
	err    error
}

type syncWriter struct{ p *Process }

func (w syncWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs path with args, capturing its standard output and error
// together, and registers a cleanup that kills it.
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	return StartCmd(t, exec.Command(path, args...))
}

// StartCmd starts a prepared command (with its own Dir or Env) the way
// Start does. Its Stdout, Stderr, Stdin and process group are set here.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{waited: make(chan struct{})}
	cmd.Stdout = syncWriter{p}
	cmd.Stderr = syncWriter{p}
	// Its own process group, so that a fixture's children die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p.Cmd, p.Pid, p.Stdin = cmd, cmd.Process.Pid, stdin
	go func() {
		p.err = cmd.Wait()
		close(p.waited)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Stop kills the process group and waits for the exit. It is safe to call
// more than once.
func (p *Process) Stop() {
	select {
	case <-p.waited:
		return
	default:
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	<-p.waited
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.waited:
		return true, p.err
	default:
		return false, nil
	}
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the output contains want, counting only what was
// printed after byte offset from. It fails the test after timeout, showing
// the output. It returns the offset just past the match.
func (p *Process) WaitFor(t testing.TB, from int, want string, timeout time.Duration) int {
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
		if done, err := p.Exited(); done {
			t.Fatalf("process %d exited (%v) before printing %q; output:\n%s", p.Pid, err, want, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not print %q within %v; output:\n%s", p.Pid, want, timeout, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
