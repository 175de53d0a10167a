package patcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

// ErrBusy means another hotpatch operation holds the process and did not
// finish within the time allowed.
var ErrBusy = errors.New("another hotpatch is operating on the process")

// lockDir holds one lock file per process being changed. Root's is under
// /run, which only root can write; another user's is private to that user.
// Tests set it.
var lockDir = defaultLockDir()

func defaultLockDir() string {
	if os.Geteuid() == 0 {
		return "/run/hotpatch/locks"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "hotpatch", "locks")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("hotpatch-%d", os.Geteuid()), "locks")
}

// LockProcess takes the lock that makes operations on process pid run one
// at a time, waiting up to timeout for another holder to finish. Apply and
// Unpatch take it themselves; a caller that changes a process by other
// means (a tracer that holds a new process at exec) takes it around that.
//
// The lock is an flock on a file named for the pid and the process's start
// time, so that a reused pid is another lock. The kernel drops it when its
// holder dies, however it dies: a killed hotpatch never blocks the next.
// The file is removed on release; a waiter that locked a removed file
// notices and tries again. The holder writes its own pid into the file,
// so that a waiter that gives up can name it.
func LockProcess(pid int, timeout time.Duration) (unlock func(), err error) {
	start, err := proc.StartTime(pid)
	if err != nil {
		return nil, err
	}
	if err := makeLockDir(lockDir); err != nil {
		return nil, fmt.Errorf("lock pid %d: %w", pid, err)
	}
	path := filepath.Join(lockDir, fmt.Sprintf("%d-%d.lock", pid, start))
	deadline := time.Now().Add(timeout)
	backoff := 200 * time.Microsecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock pid %d: %w", pid, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			if same, serr := stillAt(f, path); serr != nil || !same {
				f.Close()
				continue
			}
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			return func() {
				os.Remove(path)
				f.Close()
			}, nil
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock pid %d: %w", pid, err)
		}
		if !time.Now().Add(backoff).Before(deadline) {
			return nil, fmt.Errorf("pid %d: %w: %s has held it for longer than the %v allowed; let it finish, or raise --timeout",
				pid, ErrBusy, holder(path), timeout)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// lockProcess is LockProcess for the entry points of this package.
func lockProcess(pid int, opt Options) (func(), error) {
	return LockProcess(pid, opt.Timeout)
}

// stillAt reports whether f is the file at path: the holder before us may
// have removed it after we opened it.
func stillAt(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Lstat(path)
	if err != nil {
		return false, nil
	}
	return os.SameFile(a, b), nil
}

// holder names the hotpatch that holds the lock at path.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "another hotpatch"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return "another hotpatch"
	}
	return "hotpatch " + proc.HolderOf(pid)
}

// makeLockDir creates dir, private to this user, and refuses one another
// user owns or may write: whoever could write it could block every
// operation, or swap a lock file.
func makeLockDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*unix.Stat_t)
	if !st.IsDir() || st.Mode().Perm()&0o022 != 0 || ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("lock directory %s is not a directory owned by uid %d and writable only by it; remove it or run chmod go-w %s",
			dir, os.Geteuid(), dir)
	}
	return nil
}
