package e2e

// The daemon, end to end: a real hotpatch daemon on a temporary store and
// socket, confined with --tree to the processes this test binary starts,
// watching executions only on a tmpfs mounted for the test (so no exec
// elsewhere on the host waits for it), patching real programs built with
// the real gcc.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/daemon"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

// eventually bounds how long the tests wait for the daemon; it is a
// failure bound, not a speed assertion.
const eventually = 15 * time.Second

type daemonEnv struct {
	bin, store, socket, mount string
}

// newDaemonEnv makes a store, a socket path and a tmpfs for the programs.
func newDaemonEnv(t *testing.T) *daemonEnv {
	t.Helper()
	testutil.RequireGCC(t)
	testutil.RequirePtrace(t)
	testutil.RequireRoot(t)
	dir := t.TempDir()
	e := &daemonEnv{bin: testutil.HotpatchBinary(t), store: filepath.Join(dir, "store"),
		socket: filepath.Join(dir, "hotpatch.sock"), mount: filepath.Join(dir, "bin")}
	for _, d := range []string{e.store, e.mount} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The exec watch marks a whole mount; this one holds only the
	// test's programs.
	if err := unix.Mount("tmpfs", e.mount, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs for the test programs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(e.mount, unix.MNT_DETACH) })
	return e
}

// install copies a built fixture onto the test's mount.
func (e *daemonEnv) install(t *testing.T, built string) string {
	t.Helper()
	dst := filepath.Join(e.mount, filepath.Base(built))
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// startDaemon runs the daemon and waits until it answers.
func (e *daemonEnv) startDaemon(t *testing.T) *testutil.Process {
	t.Helper()
	cmd := exec.Command(e.bin, "daemon", "--store", e.store, "--socket", e.socket,
		"--tree", strconv.Itoa(os.Getpid()), "--exec-watch", e.mount, "--interval", "200ms")
	p := testutil.StartCmd(t, cmd)
	deadline := time.Now().Add(eventually)
	for {
		if _, err := daemon.Query(e.socket, time.Second); err == nil {
			return p
		}
		if done, err := p.Exited(); done {
			t.Fatalf("daemon exited (%v):\n%s", err, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer on %s:\n%s", e.socket, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopDaemon ends the daemon as systemd would, and waits for it.
func stopDaemon(t *testing.T, p *testutil.Process) {
	t.Helper()
	_ = syscall.Kill(p.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(eventually)
	for {
		if done, _ := p.Exited(); done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not stop on SIGTERM:\n%s", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// status runs hotpatch status --json.
func (e *daemonEnv) status(t *testing.T) *daemon.Status {
	t.Helper()
	out, err := exec.Command(e.bin, "status", "--socket", e.socket, "--json").Output()
	if err != nil {
		t.Fatalf("hotpatch status: %v", err)
	}
	var s daemon.Status
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return &s
}

// waitStatus polls status until ok accepts it.
func (e *daemonEnv) waitStatus(t *testing.T, what string, ok func(*daemon.Status) bool) *daemon.Status {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for {
		s := e.status(t)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(s, "", "  ")
			t.Fatalf("status never showed %s:\n%s", what, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// drop writes a patch into the store as operators do: a temporary name
// first, then a rename, so the daemon never reads half a file.
func (e *daemonEnv) drop(t *testing.T, p *patchfile.Patch, name string) string {
	t.Helper()
	b, err := patchfile.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(e.store, ".tmp-"+name)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.store, name)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// lines is a started program talked to line by line.
type lines struct {
	p    *testutil.Process
	seen int
}

func startLines(t *testing.T, path string, args ...string) *lines {
	t.Helper()
	return &lines{p: testutil.Start(t, path, args...)}
}

// next waits for the next output line starting with prefix.
func (l *lines) next(t *testing.T, prefix string) string {
	t.Helper()
	end := l.p.WaitFor(t, l.seen, prefix, eventually)
	out := l.p.Output()
	rest := out[end:]
	nl := strings.IndexByte(rest, '\n')
	for nl < 0 {
		time.Sleep(5 * time.Millisecond)
		out = l.p.Output()
		rest = out[end:]
		nl = strings.IndexByte(rest, '\n')
	}
	l.seen = end + nl + 1
	return prefix + rest[:nl]
}

func (l *lines) send(t *testing.T, s string) {
	t.Helper()
	if _, err := fmt.Fprintln(l.p.Stdin, s); err != nil {
		t.Fatalf("write to pid %d: %v", l.p.Pid, err)
	}
}

// until asks "go" until the program answers want.
func (l *lines) until(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for {
		l.send(t, "go")
		got := l.next(t, "msg ")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still answers %q, want %q; output:\n%s", l.p.Pid, got, want, l.p.Output())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func greetFixture(t *testing.T) string {
	return testutil.BuildFixture(t, testutil.Build{Dir: "testdata/daemon/greet", Flags: []string{"-O2", "-g", "-pthread"}})
}

func greetPatch(t *testing.T, target string, level uint32, msg string) *patchfile.Patch {
	return patchertest.Build(t, patchertest.Spec{ID: "greet-fix", Level: level, Target: target,
		Source: `const char *message_v2(void) { return "` + msg + `"; }
long work_v2(void) { return 0; }
`,
		Replace: map[string]string{"message": "message_v2", "work": "work_v2"}})
}

func findPatch(s *daemon.Status, file string) *daemon.PatchStatus {
	for i := range s.Patches {
		if s.Patches[i].File == file {
			return &s.Patches[i]
		}
	}
	return nil
}

func hasApplied(ps *daemon.PatchStatus, pid int) bool {
	if ps == nil {
		return false
	}
	for _, a := range ps.Applied {
		if a.Pid == pid {
			return true
		}
	}
	return false
}

// regionsOf counts the patch regions hotpatch info finds in pid.
func regionsOf(t *testing.T, bin string, pid int) int {
	t.Helper()
	out, err := exec.Command(bin, "info", "-p", strconv.Itoa(pid), "--json").Output()
	if err != nil {
		t.Fatalf("hotpatch info -p %d: %v", pid, err)
	}
	var doc struct {
		Processes []struct {
			Objects []struct {
				Patches []json.RawMessage `json:"patches"`
			} `json:"objects"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range doc.Processes {
		for _, o := range p.Objects {
			n += len(o.Patches)
		}
	}
	return n
}

// TestDaemonStoreIsDesiredState: a running process gets a patch dropped
// into the store; a program started afterwards runs patched code from
// the first line of main; a higher level replaces the lower one; removing
// the file restores the old code everywhere.
func TestDaemonStoreIsDesiredState(t *testing.T) {
	e := newDaemonEnv(t)
	prog := e.install(t, greetFixture(t))
	d := e.startDaemon(t)

	running := startLines(t, prog)
	if got := running.next(t, "first "); got != "first old" {
		t.Fatalf("unpatched program printed %q", got)
	}
	file := "greet.hpatch"
	e.drop(t, greetPatch(t, prog, 1, "new"), file)
	running.until(t, "msg new")
	s := e.waitStatus(t, "the running process patched", func(s *daemon.Status) bool {
		return hasApplied(findPatch(s, file), running.p.Pid)
	})
	ps := findPatch(s, file)
	if ps.State != "active" || ps.ID != "greet-fix" || ps.Level != 1 || ps.Signature != daemon.SignatureNotRequired {
		t.Errorf("status of %s: %+v", file, ps)
	}

	started := startLines(t, prog)
	if got := started.next(t, "first "); got != "first new" {
		t.Fatalf("a program started after the patch printed %q first; daemon log:\n%s", got, d.Output())
	}
	started.until(t, "msg new")

	// Level 2 replaces level 1 in one pause: one region afterwards.
	e.drop(t, greetPatch(t, prog, 2, "newer"), file)
	running.until(t, "msg newer")
	started.until(t, "msg newer")
	for _, pid := range []int{running.p.Pid, started.p.Pid} {
		if n := regionsOf(t, e.bin, pid); n != 1 {
			t.Errorf("pid %d carries %d patch regions after the level change, want 1", pid, n)
		}
	}

	if err := os.Remove(filepath.Join(e.store, file)); err != nil {
		t.Fatal(err)
	}
	running.until(t, "msg old")
	started.until(t, "msg old")
	for _, pid := range []int{running.p.Pid, started.p.Pid} {
		if n := regionsOf(t, e.bin, pid); n != 0 {
			t.Errorf("pid %d still carries %d patch regions after the file was removed", pid, n)
		}
	}
	if n := len(e.status(t).Patches); n != 0 {
		t.Errorf("status lists %d patches of an empty store", n)
	}
}

// TestDaemonDlopen: a library loaded with dlopen after the patch is in
// the store gets it.
func TestDaemonDlopen(t *testing.T) {
	e := newDaemonEnv(t)
	lib := e.install(t, testutil.BuildFixture(t, testutil.Build{Dir: "testdata/daemon/plug", Shared: true, Flags: []string{"-O2"}}))
	host := e.install(t, testutil.BuildFixture(t, testutil.Build{Dir: "testdata/daemon/plughost", Flags: []string{"-O2"}, LinkFlags: []string{"-ldl"}}))
	e.startDaemon(t)
	file := "plug.hpatch"
	e.drop(t, patchertest.Build(t, patchertest.Spec{ID: "plug-fix", Level: 1, Target: lib,
		Source:  `const char *plug_message_v2(void) { return "plug-new"; }`,
		Replace: map[string]string{"plug_message": "plug_message_v2"}}), file)

	p := startLines(t, host, lib)
	p.next(t, "ready")
	p.send(t, "load")
	p.next(t, "loaded")
	p.until(t, "msg plug-new")
	s := e.waitStatus(t, "the dlopen'ed library patched", func(s *daemon.Status) bool {
		return hasApplied(findPatch(s, file), p.p.Pid)
	})
	if a := findPatch(s, file).Applied[0]; a.Object != lib || a.Exe != host {
		t.Errorf("applied entry %+v: want object %s in %s", a, lib, host)
	}
}

// TestDaemonRestart: a restarted daemon reads back what is applied from
// the processes, reports it with its original time and pause, and applies
// nothing twice.
func TestDaemonRestart(t *testing.T) {
	e := newDaemonEnv(t)
	prog := e.install(t, greetFixture(t))
	d := e.startDaemon(t)
	p := startLines(t, prog)
	p.next(t, "first ")
	file := "greet.hpatch"
	e.drop(t, greetPatch(t, prog, 1, "new"), file)
	p.until(t, "msg new")
	before := e.waitStatus(t, "the process patched", func(s *daemon.Status) bool {
		return hasApplied(findPatch(s, file), p.p.Pid)
	})
	stopDaemon(t, d)

	d2 := e.startDaemon(t)
	after := e.waitStatus(t, "the patch read back", func(s *daemon.Status) bool {
		return hasApplied(findPatch(s, file), p.p.Pid)
	})
	if after.Daemon.Pid != d2.Pid {
		t.Errorf("status answered by pid %d, want the new daemon %d", after.Daemon.Pid, d2.Pid)
	}
	a, b := findPatch(before, file).Applied[0], findPatch(after, file).Applied[0]
	if a.At != b.At || a.PauseUS != b.PauseUS {
		t.Errorf("after the restart the application reads %+v, before %+v: it was applied again", b, a)
	}
	if n := regionsOf(t, e.bin, p.p.Pid); n != 1 {
		t.Errorf("pid %d carries %d regions after the restart, want 1", p.p.Pid, n)
	}
	p.until(t, "msg new")
}

// TestDaemonBusyProcess: a process whose thread never leaves a function
// being replaced is retried with back-off and reported as failed, while
// the other process of the same binary is patched; once the thread
// leaves, the retry succeeds.
func TestDaemonBusyProcess(t *testing.T) {
	e := newDaemonEnv(t)
	prog := e.install(t, greetFixture(t))
	e.startDaemon(t)
	busy := startLines(t, prog, "spin")
	busy.next(t, "first ")
	idle := startLines(t, prog)
	idle.next(t, "first ")
	file := "greet.hpatch"
	e.drop(t, greetPatch(t, prog, 1, "new"), file)
	idle.until(t, "msg new")
	s := e.waitStatus(t, "the busy process failed after retries and the idle one patched", func(s *daemon.Status) bool {
		ps := findPatch(s, file)
		if !hasApplied(ps, idle.p.Pid) {
			return false
		}
		for _, f := range ps.Failed {
			if f.Pid == busy.p.Pid && f.Attempts >= 2 {
				return true
			}
		}
		return false
	})
	for _, f := range findPatch(s, file).Failed {
		if f.Pid != busy.p.Pid {
			continue
		}
		if !strings.Contains(f.Error, "work") || f.NextRetry == "" || f.Exe != prog {
			t.Errorf("failure report %+v: want the function named, a next retry and the executable", f)
		}
	}
	busy.send(t, "go")
	if got := busy.next(t, "msg "); got != "msg old" {
		t.Fatalf("the busy process was changed: %q", got)
	}
	busy.send(t, "stop")
	busy.next(t, "stopped")
	busy.until(t, "msg new")
	e.waitStatus(t, "the patch rolled out", func(s *daemon.Status) bool {
		ps := findPatch(s, file)
		return ps != nil && ps.Rolled() && hasApplied(ps, busy.p.Pid) && hasApplied(ps, idle.p.Pid)
	})
}

// TestDaemonStatusUnreachable: status without a daemon exits 1 and names
// the socket.
func TestDaemonStatusUnreachable(t *testing.T) {
	bin := testutil.HotpatchBinary(t)
	sock := filepath.Join(t.TempDir(), "none.sock")
	out, err := exec.Command(bin, "status", "--socket", sock).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("status without a daemon: %v, want exit status 1; output:\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Scan()
	if line := sc.Text(); !strings.Contains(line, sock) || !strings.Contains(line, "systemctl status hotpatch") {
		t.Errorf("message %q: want the socket and the advice", line)
	}
}

// TestDaemonLeavesOtherProcessesAlone: a process outside the daemon's
// tree (orphaned away from the test binary, as a daemonised service would
// be) runs the same binary but is never patched, while one inside is.
func TestDaemonLeavesOtherProcessesAlone(t *testing.T) {
	e := newDaemonEnv(t)
	prog := e.install(t, greetFixture(t))
	e.startDaemon(t)
	dir := t.TempDir()
	fifo, outFile := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Held open for reading and writing, the FIFO never blocks an open.
	in, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// sh starts prog in the background and exits: prog is reparented
	// away from the test binary.
	b, err := exec.Command("sh", "-c", fmt.Sprintf("%s >%s 2>&1 <%s & echo $!", prog, outFile, fifo)).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("background pid %q: %v", b, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if st, err := proc.ReadStatus(pid); err != nil || st.PPid == os.Getpid() {
		t.Fatalf("background program %d: parent %d (%v), want it orphaned", pid, st.PPid, err)
	}
	inside := startLines(t, prog)
	inside.next(t, "first ")
	e.drop(t, greetPatch(t, prog, 1, "new"), "greet.hpatch")
	inside.until(t, "msg new")
	s := e.waitStatus(t, "the inside process patched", func(s *daemon.Status) bool {
		return hasApplied(findPatch(s, "greet.hpatch"), inside.p.Pid)
	})
	if n := len(findPatch(s, "greet.hpatch").Applied); n != 1 {
		t.Errorf("%d processes patched, want only the one inside the tree", n)
	}
	// Two more scans' worth of time for the daemon to misbehave.
	time.Sleep(time.Second)
	if _, err := in.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(eventually)
	for {
		out, _ := os.ReadFile(outFile)
		if strings.Contains(string(out), "msg ") {
			if !strings.Contains(string(out), "msg old") {
				t.Fatalf("the process outside the tree was patched:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process outside the tree did not answer:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := regionsOf(t, e.bin, pid); n != 0 {
		t.Errorf("the process outside the tree carries %d patch regions", n)
	}
}
