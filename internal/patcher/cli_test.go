package patcher_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// hotpatchTool is the command: the command-line tests run it as a
// separate process, as a user would, so that every call starts afresh and
// finds what earlier calls applied in the target alone.
func hotpatchTool(t *testing.T) string {
	t.Helper()
	return testutil.HotpatchBinary(t)
}

func runTool(t *testing.T, tool string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(tool, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

type outcome struct {
	Processes []struct {
		Pid     int    `json:"pid"`
		Status  string `json:"status"`
		Error   string `json:"error"`
		PauseUS int64  `json:"pause_us"`
		Patches []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"patches"`
	} `json:"processes"`
}

func TestCommandLinePatchInfoUnpatch(t *testing.T) {
	testutil.RequirePtrace(t)
	t.Parallel()
	// -g gives this build a build-id of its own: "patch -p all" must
	// not reach the processes of other tests that run the blockers.
	app := testutil.BuildFixture(t, testutil.Build{Dir: "../ptrace/testdata/blockers", Name: "cli-target", Flags: []string{"-O2", "-g", "-pthread"}})
	tg := ptracetest.Start(t, app, "600000")
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	pid := strconv.Itoa(tg.Pid)
	tool := hotpatchTool(t)

	dir := t.TempDir()
	p := patchertest.Build(t, patchertest.Spec{ID: "CVE-0000-1", Level: 1, Target: app,
		Source: `int value_hp(void) { return 42; }`, Replace: map[string]string{"value": "value_hp"}})
	file := filepath.Join(dir, p.FileName())
	if err := patchfile.WriteFile(file, p); err != nil {
		t.Fatal(err)
	}
	// A patch for another build in the same directory is ignored for
	// this process; alone, with -p PID, it is an error.
	other := *p
	other.BuildID = []byte{1, 2, 3, 4}
	other.ID = "other"
	otherDir := t.TempDir()
	otherFile := filepath.Join(otherDir, other.FileName())
	if err := patchfile.WriteFile(otherFile, &other); err != nil {
		t.Fatal(err)
	}
	if err := patchfile.WriteFile(filepath.Join(dir, other.FileName()), &other); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runTool(t, tool, "patch", "-p", pid, otherFile)
	if code == 0 || !strings.Contains(errOut, "01020304") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("patch for another build: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut := runTool(t, tool, "patch", "-p", pid, "--json", dir)
	if code != 0 {
		t.Fatalf("patch exited %d: %s", code, errOut)
	}
	var res outcome
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("patch --json: %v\n%s", err, out)
	}
	if len(res.Processes) != 1 || res.Processes[0].Status != "ok" || res.Processes[0].PauseUS <= 0 ||
		len(res.Processes[0].Patches) != 1 || res.Processes[0].Patches[0].ID != "CVE-0000-1" {
		t.Fatalf("patch --json: %s", out)
	}

	// A new tool process finds the patch in the target alone.
	code, out, errOut = runTool(t, tool, "info", "-p", pid, "--json")
	if code != 0 || !strings.Contains(out, `"id": "CVE-0000-1"`) || !strings.Contains(out, `"pause_us"`) || !strings.Contains(out, `"build_id"`) {
		t.Fatalf("info exited %d: %s %s", code, out, errOut)
	}
	code, out, _ = runTool(t, tool, "patch", "-p", pid, file)
	if code != 0 || !strings.Contains(out, "already applied") {
		t.Fatalf("second patch exited %d: %s", code, out)
	}
	code, out, errOut = runTool(t, tool, "unpatch", "-p", pid, "-i", "CVE-0000-1", "--json")
	if code != 0 || !strings.Contains(out, `"removed"`) {
		t.Fatalf("unpatch exited %d: %s %s", code, out, errOut)
	}
	code, _, errOut = runTool(t, tool, "unpatch", "-p", pid)
	if code == 0 || !strings.Contains(errOut, "no patch applied") {
		t.Fatalf("unpatch of an unpatched process: exit %d, %s", code, errOut)
	}

	// -p all is tested in a PID namespace of its own (all_test.go): here
	// it would look at every process of the machine.
	if !tg.Alive() {
		t.Fatal("target died")
	}
}

// TestBuiltPatchAppliesToRunningService runs the whole pipeline as a user
// would: make builds the service, hotpatch build makes the patch from a
// source diff against that very binary, hotpatch patch applies it to the
// running service and hotpatch unpatch removes it.
func TestBuiltPatchAppliesToRunningService(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "make")
	t.Parallel()
	tool := hotpatchTool(t)
	src := t.TempDir()
	for _, f := range []string{"svc.c", "Makefile", "fix.diff"} {
		b, err := os.ReadFile(filepath.Join("testdata/pipeline", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("make", "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	svc := filepath.Join(src, "svc")
	tg := ptracetest.Start(t, svc)
	tg.WaitFor(t, 0, "answer=41\n", 10*time.Second)
	outDir := filepath.Join(t.TempDir(), "patches")
	code, out, errOut := runTool(t, tool, "build", "-C", src, "-o", outDir, "--id", "FIX-1", "--target", svc, filepath.Join(src, "fix.diff"))
	if code != 0 {
		t.Fatalf("hotpatch build exited %d:\n%s\n%s", code, out, errOut)
	}
	pid := strconv.Itoa(tg.Pid)
	code, out, errOut = runTool(t, tool, "patch", "-p", pid, outDir)
	if code != 0 || !strings.Contains(out, "FIX-1") {
		t.Fatalf("hotpatch patch exited %d:\n%s\n%s", code, out, errOut)
	}
	off := tg.WaitFor(t, len(tg.Output()), "answer=42\n", 5*time.Second)
	code, out, errOut = runTool(t, tool, "unpatch", "-p", pid)
	if code != 0 {
		t.Fatalf("hotpatch unpatch exited %d:\n%s\n%s", code, out, errOut)
	}
	tg.WaitFor(t, off, "answer=41\n", 5*time.Second)
}
