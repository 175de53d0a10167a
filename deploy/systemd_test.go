package deploy_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

const unitFile = "systemd/hotpatch.service"

// unitSettings reads the [Service] section of the unit: key to values, in
// order, as systemd would accumulate them.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is not key=value", unitFile, line)
			}
			settings[k] = append(settings[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}

// TestSystemdUnitFollowsTheContract checks the unit against what the
// daemon and its clients agreed: the default store and socket, and the
// capabilities the daemon needs and no others.
func TestSystemdUnitFollowsTheContract(t *testing.T) {
	s := unitSettings(t)
	want := map[string]string{
		"ExecStart":              "/usr/bin/hotpatch daemon --store /var/lib/hotpatch/patches --socket /run/hotpatch.sock",
		"CapabilityBoundingSet":  "CAP_SYS_PTRACE CAP_SYS_ADMIN CAP_SYS_NICE CAP_DAC_OVERRIDE",
		"NoNewPrivileges":        "yes",
		"ProtectSystem":          "strict",
		"StateDirectory":         "hotpatch hotpatch/patches",
		"StateDirectoryMode":     "0700",
		"ReadWritePaths":         "/run",
		"MemoryDenyWriteExecute": "yes",
	}
	for k, v := range want {
		if got := strings.Join(s[k], "\n"); got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	// Each of these would break the daemon: it must see every process,
	// raise the tracer to SCHED_FIFO, and listen to the process
	// connector in the host's network namespace.
	for _, k := range []string{"ProtectProc", "ProcSubset", "RestrictRealtime", "PrivateNetwork", "PrivateUsers", "User", "DynamicUser", "SecureBits"} {
		if v, ok := s[k]; ok {
			t.Errorf("%s=%q is set; the daemon cannot work with it", k, v)
		}
	}
}

// TestSystemdUnitExposure asks systemd's own assessment, offline, and
// fails if a change loosens the sandbox past "OK". The unit rates 2.6
// today; what remains is mostly CAP_SYS_PTRACE and CAP_SYS_ADMIN, which
// the daemon cannot do without.
func TestSystemdUnitExposure(t *testing.T) {
	testutil.RequireTools(t, "systemd-analyze")
	cmd := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--threshold=35", unitFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security rates the unit above 3.5 or failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Overall exposure level for hotpatch.service") {
		t.Errorf("systemd-analyze security gave no rating:\n%s", out)
	}
}

// TestUnitCapabilitiesSufficeToPatch runs "hotpatch patch" as root bounded
// to exactly the unit's capabilities, against a process of another user,
// and checks the process prints the patched line. The same run without
// CAP_SYS_PTRACE must fail, which shows the bound is real.
func TestUnitCapabilitiesSufficeToPatch(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "setpriv")
	hp := testutil.HotpatchBinary(t)
	program, patches := buildSimplePatch(t)

	// The fixture runs as nobody from a folder nobody may enter.
	dir, err := os.MkdirTemp("", "hotpatch-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	prog := filepath.Join(dir, "prog")
	if b, err := os.ReadFile(program); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fixture := testutil.Start(t, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", prog)
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
		t.Fatalf("the fixture printed %q before the patch", out)
	}
	pid := strconv.Itoa(fixture.Pid) // setpriv execs the program: same pid

	caps := strings.Fields(unitSettings(t)["CapabilityBoundingSet"][0])
	bounded := func(caps []string) *exec.Cmd {
		set := "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		}
		return exec.Command("setpriv", "--inh-caps=-all", "--bounding-set="+set, "--", hp, "patch", "-p", pid, patches)
	}

	var noPtrace []string
	for _, c := range caps {
		if c != "CAP_SYS_PTRACE" {
			noPtrace = append(noPtrace, c)
		}
	}
	out, err := bounded(noPtrace).CombinedOutput()
	if err == nil {
		t.Fatalf("hotpatch patch without CAP_SYS_PTRACE succeeded against another user's process:\n%s", out)
	}
	if out := ask(); !strings.Contains(out, "hello, world") {
		t.Fatalf("the refused run changed the fixture: %q", out)
	}

	if out, err := bounded(caps).CombinedOutput(); err != nil {
		t.Fatalf("hotpatch patch bounded to the unit's %v: %v\n%s", caps, err, out)
	}
	if out := ask(); !strings.Contains(out, "goodbye, world") {
		t.Fatalf("patched with the unit's capabilities, the fixture printed %q", out)
	}
}
