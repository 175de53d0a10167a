package patcher_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// allScript runs, as pid 1 of a PID namespace of its own, two processes of
// one build under two names, and the -p all commands with --exe and
// --dry-run; each command's output follows a "== NAME" line.
const allScript = `
hp=$1 a=$2 b=$3 dir=$4 cfg=$5
sleep 600 | "$a" >/dev/null &
sleep 600 | "$b" >/dev/null &
for i in $(seq 100); do
	[ "$(grep -l turns /proc/[0-9]*/comm 2>/dev/null | wc -l)" -ge 2 ] && break
	sleep 0.05
done
sleep 0.2
echo "== dry-run"; "$hp" patch --config "$cfg" -p all --exe "$a" --dry-run "$dir"; echo "exit $?"
echo "== info-after-dry-run"; "$hp" info -p all --json; echo "exit $?"
echo "== patch"; "$hp" patch --config "$cfg" -p all --exe "$a" --json "$dir"; echo "exit $?"
echo "== info"; "$hp" info -p all --json; echo "exit $?"
echo "== info-b"; "$hp" info -p all --exe "$b" --json; echo "exit $?"
echo "== unpatch-dry-run-b"; "$hp" unpatch -p all --exe "$b" --dry-run; echo "exit $?"
echo "== unpatch-dry-run-a"; "$hp" unpatch -p all --exe "$a" --dry-run; echo "exit $?"
echo "== unpatch"; "$hp" unpatch -p all --exe "$a" --json; echo "exit $?"
echo "== info-end"; "$hp" info -p all --json; echo "exit $?"
`

// TestAllWithExeAndDryRun checks -p all, limited with --exe to the
// processes of one file, in a PID namespace the test made, so that no
// process outside it is ever looked at: a dry run changes nothing, the
// patch reaches only the process that runs the named file and not another
// program of the same build, and unpatch -p all --exe removes it there.
func TestAllWithExeAndDryRun(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "unshare")
	t.Parallel()
	tool := hotpatchTool(t)
	app := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/turns", Name: "turns-all", Flags: []string{"-O2", "-g", "-pthread"}})
	bin := privateDir(t)
	a, b := filepath.Join(bin, "turns-a"), filepath.Join(bin, "turns-b")
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := privateDir(t)
	writePatchFile(t, dir, app, "ALL-1", "alpha", 10)
	script := filepath.Join(bin, "all.sh")
	if err := os.WriteFile(script, []byte(allScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "sh", script, tool, a, b, dir, filepath.Join(bin, "no-config"))
	done := make(chan struct{})
	var out []byte
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the namespace script did not finish:\n%s", out)
	}
	if err != nil {
		t.Fatalf("unshare: %v\n%s", err, out)
	}
	sections := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = strings.TrimSpace(n)
			continue
		}
		sections[name] += line
	}
	section := func(n string) string {
		t.Helper()
		s, ok := sections[n]
		if !ok || !strings.HasSuffix(s, "exit 0\n") {
			t.Fatalf("%s did not exit 0:\n%s", n, out)
		}
		return strings.TrimSuffix(s, "exit 0\n")
	}
	type procDoc struct {
		Processes []struct {
			Pid     int    `json:"pid"`
			Command string `json:"command"`
			Status  string `json:"status"`
		} `json:"processes"`
	}
	processes := func(n string) procDoc {
		t.Helper()
		var d procDoc
		if err := json.Unmarshal([]byte(section(n)), &d); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
		return d
	}
	if dry := section("dry-run"); strings.Count(dry, "would apply ALL-1 level 1") != 1 || !strings.Contains(dry, "(turns-a)") {
		t.Fatalf("dry run: want one process, turns-a, that would get ALL-1:\n%s", out)
	}
	if n := len(processes("info-after-dry-run").Processes); n != 0 {
		t.Fatalf("the dry run patched %d processes:\n%s", n, out)
	}
	if p := processes("patch").Processes; len(p) != 1 || p[0].Status != "ok" {
		t.Fatalf("patch -p all --exe: want one process patched:\n%s", out)
	}
	if p := processes("info").Processes; len(p) != 1 || p[0].Command != "turns-a" {
		t.Fatalf("info -p all: want turns-a alone patched:\n%s", out)
	}
	if n := len(processes("info-b").Processes); n != 0 {
		t.Fatalf("info -p all --exe turns-b lists %d patched processes:\n%s", n, out)
	}
	if s := section("unpatch-dry-run-b"); strings.TrimSpace(s) != "" {
		t.Fatalf("unpatch --dry-run --exe turns-b would touch something:\n%s", out)
	}
	if s := section("unpatch-dry-run-a"); strings.Count(s, "would remove ALL-1") != 1 {
		t.Fatalf("unpatch --dry-run --exe turns-a:\n%s", out)
	}
	if p := processes("unpatch").Processes; len(p) != 1 || p[0].Status != "ok" {
		t.Fatalf("unpatch -p all --exe: want one process:\n%s", out)
	}
	if n := len(processes("info-end").Processes); n != 0 {
		t.Fatalf("after unpatch, %d processes still carry a patch:\n%s", n, out)
	}
}
