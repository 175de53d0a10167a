package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"

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
		"CapabilityBoundingSet":  "CAP_SYS_PTRACE CAP_SYS_ADMIN CAP_SYS_NICE CAP_DAC_READ_SEARCH",
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
// fails if a change loosens the sandbox past "OK". The unit rates 2.8
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
