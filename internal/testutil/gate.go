// Package testutil holds what the end-to-end tests share: building C and
// C++ fixtures with the real compiler, running them as processes that are
// stopped when the test ends, and gates that skip a test with a stated
// reason when the machine cannot run it.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// StrictEnv names the switch CI sets: with it, a test that would skip
// because a required tool (gcc, ptrace, root) is missing fails instead, so
// a machine that lost its toolchain cannot pass by skipping everything.
const StrictEnv = "HOTPATCH_REQUIRE_TOOLS"

// skipRequired skips the test with the reason, or fails it when StrictEnv
// is set.
func skipRequired(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(StrictEnv) != "" {
		t.Fatalf("%s is set and a required tool is missing: "+format, append([]any{StrictEnv}, args...)...)
	}
	t.Skipf(format, args...)
}

// RequireTools skips the test, naming what is missing, unless every named
// program is on PATH.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skipRequired(t, "skipped: %s is not installed (the test needs the real toolchain; on Debian: apt-get install build-essential)", n)
		}
	}
}

// RequireGCC skips the test unless gcc, g++ and GNU as are installed.
func RequireGCC(t testing.TB) {
	t.Helper()
	RequireTools(t, "gcc", "g++", "as", "ld")
}

var (
	ptraceOnce sync.Once
	ptraceErr  error
)

// RequirePtrace skips the test unless this process may trace its own
// children. It tries for real: seizes a sleeping child and detaches.
func RequirePtrace(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		skipRequired(t, "skipped: live patching runs on linux/amd64 and linux/arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	ptraceOnce.Do(func() { ptraceErr = probePtrace() })
	if ptraceErr != nil {
		skipRequired(t, "skipped: ptrace is not permitted here (%v); run as root, grant CAP_SYS_PTRACE, or set kernel.yama.ptrace_scope=0", ptraceErr)
	}
}

func probePtrace() error {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start probe child: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pid := cmd.Process.Pid
		if err := unix.PtraceSeize(pid); err != nil {
			errc <- err
			return
		}
		errc <- unix.PtraceDetach(pid)
	}()
	err := <-errc
	if errors.Is(err, unix.ESRCH) {
		// The probe child may not be traceable yet for reasons unrelated
		// to permission; only EPERM and friends mean "not allowed".
		return nil
	}
	return err
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipRequired(t, "skipped: the test needs root")
	}
}
