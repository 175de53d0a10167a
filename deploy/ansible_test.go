package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

const playbook = "ansible/rollout.yml"

// recap is the PLAY RECAP line of one host.
type recap struct{ ok, changed, failed, skipped int }

var recapLine = regexp.MustCompile(`localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)\s+skipped=(\d+)`)

// ansible runs the playbook against this machine over the local
// connection, as root without sudo, with vars as extra variables.
func ansible(t *testing.T, vars map[string]string, args ...string) (recap, string, error) {
	t.Helper()
	testutil.RequireTools(t, "ansible-playbook")
	argv := []string{"-c", "local", "-i", "localhost,", playbook,
		"-e", "hotpatch_hosts=localhost", "-e", "ansible_become=false"}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		// Debian's ansible-core runs on Debian's python; another python3
		// first on PATH (pyenv) lacks its modules.
		argv = append(argv, "-e", "ansible_python_interpreter=/usr/bin/python3")
	}
	for k, v := range vars {
		argv = append(argv, "-e", k+"="+v)
	}
	cmd := exec.Command("ansible-playbook", append(argv, args...)...)
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
		"ANSIBLE_REMOTE_TEMP="+t.TempDir(), "ANSIBLE_RETRY_FILES_ENABLED=0")
	out, err := cmd.CombinedOutput()
	m := recapLine.FindStringSubmatch(string(out))
	if m == nil {
		if err == nil {
			t.Fatalf("ansible-playbook printed no recap for localhost:\n%s", out)
		}
		return recap{}, string(out), err
	}
	n := func(s string) int { i, _ := strconv.Atoi(s); return i }
	return recap{ok: n(m[1]), changed: n(m[2]), failed: n(m[3]), skipped: n(m[4])}, string(out), err
}

var simplePatch struct {
	once sync.Once
	dir  string // holds the built program and the patch folder
	err  error
	out  []byte
}

// buildSimplePatch builds e2e's "simple" case and its patch with the real
// gcc and hotpatch build, once per test run: the program prints "hello,
// world" for each request, and "goodbye, world" once patched.
func buildSimplePatch(t *testing.T) (program, patchDir string) {
	t.Helper()
	testutil.RequireGCC(t)
	testutil.RequireTools(t, "make", "patch")
	hp := testutil.HotpatchBinary(t)
	simplePatch.once.Do(func() {
		dir, err := os.MkdirTemp("", "hotpatch-ansible-")
		if err != nil {
			simplePatch.err = err
			return
		}
		simplePatch.dir = dir
		script := `set -e
cp -r "$1/src/." "$3/src"
cp "$2" "$3/src/harness.h"
make -s -C "$3/src"
"$4" build -C "$3/src" -o "$3/patches" --id simple-fix "$1/fix.diff"`
		cases, _ := filepath.Abs("../e2e/testdata/cases/simple")
		harness, _ := filepath.Abs("../e2e/testdata/common/harness.h")
		if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
			simplePatch.err = err
			return
		}
		simplePatch.out, simplePatch.err = exec.Command("sh", "-c", script, "sh", cases, harness, dir, hp).CombinedOutput()
	})
	if simplePatch.err != nil {
		t.Fatalf("build the simple case's patch: %v\n%s", simplePatch.err, simplePatch.out)
	}
	return filepath.Join(simplePatch.dir, "src", "prog"), filepath.Join(simplePatch.dir, "patches")
}

func TestAnsiblePlaybookSyntax(t *testing.T) {
	testutil.RequireTools(t, "ansible-playbook")
	out, err := exec.Command("ansible-playbook", "--syntax-check", "-i", "localhost,", playbook).CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-playbook --syntax-check: %v\n%s", err, out)
	}
}

// TestAnsibleCopyIsIdempotent runs the copy part twice into a temporary
// store: the first run copies, the second changes nothing, and the stored
// patch is the one built, byte for byte, readable by root alone.
func TestAnsibleCopyIsIdempotent(t *testing.T) {
	_, patches := buildSimplePatch(t)
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(store, "0000.hpatch")
	if err := os.WriteFile(stale, []byte("an older rollout"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"hotpatch_patch_dir": patches, "hotpatch_store": store}

	first, out, err := ansible(t, vars, "--skip-tags", "wait")
	if err != nil || first.failed != 0 || first.changed == 0 {
		t.Fatalf("first copy run: %v, %+v\n%s", err, first, out)
	}
	built, _ := filepath.Glob(filepath.Join(patches, "*.hpatch"))
	if len(built) == 0 {
		t.Fatalf("hotpatch build wrote no patch into %s", patches)
	}
	for _, p := range built {
		want, _ := os.ReadFile(p)
		dst := filepath.Join(store, filepath.Base(p))
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in the store differs from the built patch (%v)", filepath.Base(p), err)
		}
		if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s in the store: mode %v (%v), want 0600", dst, st.Mode(), err)
		}
	}
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("without hotpatch_prune the playbook removed %s: %v", stale, err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(store, ".*")); len(tmp) != 0 {
		t.Errorf("the copy left temporary files in the store: %v", tmp)
	}

	second, out, err := ansible(t, vars, "--skip-tags", "wait")
	if err != nil || second.failed != 0 || second.changed != 0 {
		t.Fatalf("second copy run changed something: %v, %+v\n%s", err, second, out)
	}

	vars["hotpatch_prune"] = "true"
	pruned, out, err := ansible(t, vars, "--skip-tags", "wait")
	if err != nil || pruned.changed != 1 {
		t.Fatalf("prune run: %v, %+v, want exactly the stale file removed\n%s", err, pruned, out)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("hotpatch_prune=true left %s in the store (%v)", stale, err)
	}
	for _, p := range built {
		if _, err := os.Stat(filepath.Join(store, filepath.Base(p))); err != nil {
			t.Errorf("hotpatch_prune=true removed a patch of the rollout: %v", err)
		}
	}
}

func TestAnsibleRefusesAnEmptyRollout(t *testing.T) {
	store := t.TempDir()
	r, out, err := ansible(t, map[string]string{"hotpatch_patch_dir": t.TempDir(), "hotpatch_store": store})
	if err == nil || r.failed == 0 || !strings.Contains(out, "no .hpatch file in hotpatch_patch_dir=") {
		t.Fatalf("an empty patch folder: %v, %+v; want a failure that says so\n%s", err, r, out)
	}
	if left, _ := os.ReadDir(store); len(left) != 0 {
		t.Errorf("the failed rollout left %d files in the store", len(left))
	}
}

// TestAnsibleWaitFollowsTheStatusContract feeds the wait documents shaped
// by the status contract through a stand-in for "hotpatch status": a
// script that prints a fixed document. The daemon itself is exercised by
// TestAnsibleRolloutThroughTheDaemon.
func TestAnsibleWaitFollowsTheStatusContract(t *testing.T) {
	dir := t.TempDir()
	patches := filepath.Join(dir, "patches")
	if err := os.Mkdir(patches, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"aaaa.hpatch", "bbbb.hpatch"} {
		if err := os.WriteFile(filepath.Join(patches, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(file, state, extra string) string {
		return fmt.Sprintf(`{"file": %q, "id": "CVE-1", "level": 1, "build_id": "aa", "signature": "not-required", "state": %q%s}`, file, state, extra)
	}
	doc := func(entries ...string) string {
		return `{"daemon": {"pid": 7, "store": "/s", "socket": "/s.sock", "started": "2026-12-02T07:00:00Z", "version": "t"}, "patches": [` +
			strings.Join(entries, ",") + "]}"
	}
	applied := `, "applied": [{"pid": 42, "exe": "/usr/sbin/x", "object": "/usr/sbin/x", "pause_us": 120, "at": "2026-12-02T07:00:01Z"}], "failed": [], "pending": []`
	for _, c := range []struct {
		name   string
		doc    string
		exit   int
		ok     bool
		reason []string
	}{
		{"all active", doc(entry("aaaa.hpatch", "active", applied), entry("bbbb.hpatch", "active", `, "applied": [], "failed": null, "pending": null`)), 0, true, nil},
		{"one pending", doc(entry("aaaa.hpatch", "active", applied), entry("bbbb.hpatch", "active", `, "applied": [], "failed": [], "pending": [{"pid": 44, "exe": "/usr/sbin/x"}]`)), 0, false,
			[]string{"bbbb.hpatch: CVE-1 active; 1 process(es) pending"}},
		{"one failed", doc(entry("aaaa.hpatch", "active", `, "applied": [], "failed": [{"pid": 43, "exe": "/usr/sbin/x", "error": "thread 43 is inside greet", "attempts": 3, "next_retry": "2026-12-02T07:00:09Z"}], "pending": []`), entry("bbbb.hpatch", "active", applied)), 0, false,
			[]string{"aaaa.hpatch: CVE-1 active; pid 43 /usr/sbin/x failed 3x: thread 43 is inside greet"}},
		{"rejected", doc(entry("aaaa.hpatch", "rejected", `, "reason": "signed by an untrusted key", "applied": [], "failed": [], "pending": []`), entry("bbbb.hpatch", "active", applied)), 0, false,
			[]string{"aaaa.hpatch: CVE-1 rejected (signed by an untrusted key)"}},
		{"not yet in the store", doc(entry("aaaa.hpatch", "active", applied)), 0, false,
			[]string{"bbbb.hpatch: not in the daemon's store"}},
		{"daemon unreachable", "", 1, false,
			[]string{"the daemon did not answer on /run/test.sock: cannot reach the daemon", "systemctl status hotpatch"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status := filepath.Join(t.TempDir(), "status")
			script := fmt.Sprintf("#!/bin/sh\n[ \"$1 $2 $3 $4\" = 'status --socket /run/test.sock --json' ] || { echo \"bad arguments: $*\" >&2; exit 3; }\n"+
				"cat <<'DOC'\n%s\nDOC\n[ %d = 0 ] || echo 'cannot reach the daemon' >&2\nexit %d\n", c.doc, c.exit, c.exit)
			if err := os.WriteFile(status, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			r, out, err := ansible(t, map[string]string{
				"hotpatch_patch_dir": patches, "hotpatch_store": t.TempDir(), "hotpatch_bin": status,
				"hotpatch_socket": "/run/test.sock", "hotpatch_wait_retries": "1", "hotpatch_wait_delay": "0",
			}, "--tags", "wait")
			if c.ok {
				if err != nil || r.failed != 0 {
					t.Fatalf("want the rollout accepted: %v, %+v\n%s", err, r, out)
				}
				return
			}
			if err == nil || r.failed == 0 {
				t.Fatalf("want the rollout refused: %+v\n%s", r, out)
			}
			for _, w := range c.reason {
				if !strings.Contains(out, w) {
					t.Errorf("the failure does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestAnsibleRolloutThroughTheDaemon is the playbook's end-to-end test: a
// real daemon on a temporary store and socket, inside a PID namespace the
// test makes together with a fixture process, and the playbook run
// against it until the process prints the patched line.
func TestAnsibleRolloutThroughTheDaemon(t *testing.T) {
	testutil.RequireRoot(t) // a PID namespace, and the daemon's fanotify watch
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "unshare", "ansible-playbook")
	hp := testutil.HotpatchBinary(t)
	program, patches := buildSimplePatch(t)
	dir := t.TempDir()
	store, socket, log := filepath.Join(dir, "store"), filepath.Join(dir, "hotpatch.sock"), filepath.Join(dir, "daemon.log")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	// In the namespace, "every process" the daemon scans is the shell
	// (PID 1, which the daemon leaves alone like any init) and the fixture.
	// Killing unshare at the test's end kills PID 1, which ends the
	// namespace and everything in it.
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
		`"$1" daemon --no-exec-watch --store "$2" --socket "$3" >"$4" 2>&1 & "$5"`, "sh", hp, store, socket, log, program)
	fixture := testutil.StartCmd(t, cmd)
	read := fixture.WaitFor(t, 0, "ready pid=", 10*time.Second)
	ask := func() string {
		t.Helper()
		if _, err := io.WriteString(fixture.Stdin, "go\n"); err != nil {
			t.Fatalf("send a request to the fixture: %v", err)
		}
		start := read
		read = fixture.WaitFor(t, start, "--end--\n", 20*time.Second)
		return fixture.Output()[start:read]
	}
	if out := ask(); !strings.Contains(out, "hello, world") {
		t.Fatalf("before the rollout the fixture printed %q", out)
	}

	vars := map[string]string{"hotpatch_patch_dir": patches, "hotpatch_store": store, "hotpatch_bin": hp,
		"hotpatch_socket": socket, "hotpatch_wait_retries": "30", "hotpatch_wait_delay": "1"}
	r, out, err := ansible(t, vars)
	if err != nil || r.failed != 0 {
		daemonLog, _ := os.ReadFile(log)
		t.Fatalf("rollout: %v, %+v\n%s\ndaemon log:\n%s", err, r, out, daemonLog)
	}
	if out := ask(); !strings.Contains(out, "goodbye, world") {
		daemonLog, _ := os.ReadFile(log)
		t.Fatalf("the playbook reported the rollout done, yet the fixture printed %q\ndaemon log:\n%s", out, daemonLog)
	}
	again, out, err := ansible(t, vars)
	if err != nil || again.failed != 0 || again.changed != 0 {
		t.Fatalf("a second rollout of the same patches: %v, %+v; want nothing changed\n%s", err, again, out)
	}
}
