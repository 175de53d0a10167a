package patcher_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// killsEnv raises the number of kills of TestKilledHotpatch above its
// default, for a longer soak.
const killsEnv = "HOTPATCH_FAULT_KILLS"

// TestKilledHotpatchLeavesNothingUnexplained SIGKILLs hotpatch patch and
// hotpatch unpatch at points spread over their whole run, from before they
// read the target to after they resumed it, and after each kill checks
// that the target runs, that every mapping it did not have before lies in
// a region info lists, that what info says agrees with what the program
// does, and that unpatch removes whatever was left, down to the original
// mappings.
func TestKilledHotpatchLeavesNothingUnexplained(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	t.Parallel()
	kills := 200
	if v := os.Getenv(killsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive count", killsEnv, v)
		}
		kills = n
	}
	if testing.Short() {
		kills = 40
	}
	tool := hotpatchTool(t)
	tg := startTurns(t, "turns-kill")
	dir := privateDir(t)
	pa := writePatchFile(t, dir, tg.app, "K", "alpha", 10)
	pid := strconv.Itoa(tg.Pid)
	none := filepath.Join(t.TempDir(), "no-config")
	patchArgs := []string{"patch", "--config", none, "-p", pid, pa}
	unpatchArgs := []string{"unpatch", "-p", pid}
	tg.ask(t) // stdio allocates its buffers on first use
	baseline := mappings(t, tg.Pid)

	// How long an uninterrupted run takes, to spread the kills over it.
	timed := func(args []string) time.Duration {
		start := time.Now()
		if code, _, errOut := runTool(t, tool, args...); code != 0 {
			t.Fatalf("%s: %s", args[0], errOut)
		}
		return time.Since(start)
	}
	var patchRun, unpatchRun time.Duration
	for i := 0; i < 3; i++ {
		patchRun = max(patchRun, timed(patchArgs))
		unpatchRun = max(unpatchRun, timed(unpatchArgs))
	}

	applied := false
	counts := map[string]int{}
	for i := 0; i < kills; i++ {
		args, run := patchArgs, patchRun
		if applied {
			args, run = unpatchArgs, unpatchRun
		}
		// A sweep over [0, 1.25 run) in an order that alternates early
		// and late points.
		at := time.Duration(float64(run) * 1.25 * float64((i*37)%kills) / float64(kills))
		cmd := exec.Command(tool, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(at)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		what := fmt.Sprintf("kill %d: %s killed after %v", i, args[0], at)
		// A target that died may not have been reaped yet: wait a little
		// for its exit status before anything else reads it.
		for w := 0; w < 10; w++ {
			if done, err := tg.Exited(); done {
				t.Fatalf("%s: the target died: %v\n%s", what, err, tg.Output())
			}
			if w == 0 {
				if _, err := proc.ReadStatus(tg.Pid); err == nil {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		regions := info(t, tool, tg.Pid)
		explained(t, what, baseline, mappings(t, tg.Pid), regions)
		active := false
		for _, r := range regions {
			counts[r.State]++
			switch r.State {
			case "active":
				active = true
			case "inactive", "incomplete":
			default:
				t.Fatalf("%s: info lists patch %s in state %s", what, r.ID, r.State)
			}
		}
		if a, _ := tg.ask(t); (a == 10) != active {
			t.Fatalf("%s: alpha returns %d, and info lists %+v", what, a, regions)
		}
		// A region that is not active is what an interrupted run left:
		// unpatch must remove it.
		for _, r := range regions {
			if r.State == "active" {
				continue
			}
			if code, _, errOut := runTool(t, tool, "unpatch", "-p", pid, "-i", r.ID); code != 0 {
				t.Fatalf("%s: unpatch of the %s region at %#x: %s", what, r.State, r.Region, errOut)
			}
		}
		applied = active
	}
	t.Logf("regions seen after kills, by state: %v", counts)
	for {
		code, _, errOut := runTool(t, tool, "unpatch", "-p", pid)
		if code != 0 {
			if !strings.Contains(errOut, "no patch applied") {
				t.Fatalf("final unpatch: %s", errOut)
			}
			break
		}
	}
	if now := mappings(t, tg.Pid); strings.Join(now, "\n") != strings.Join(baseline, "\n") {
		t.Fatalf("after unpatch the mappings differ from the original ones:\n%s\nnow:\n%s", strings.Join(baseline, "\n"), strings.Join(now, "\n"))
	}
	if a, _ := tg.ask(t); a != 1 {
		t.Fatalf("after unpatch alpha returns %d", a)
	}
}

// mappings lists the mappings of pid as "start-end perms path".
func mappings(t *testing.T, pid int) []string {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range maps {
		out = append(out, fmt.Sprintf("%x-%x %s %s", m.Start, m.End, m.Perms, m.Path))
	}
	return out
}

// explained fails the test unless every mapping of now that baseline does
// not have lies inside a region that info listed.
func explained(t *testing.T, what string, baseline, now []string, regions []regionInfo) {
	t.Helper()
	had := map[string]bool{}
	for _, m := range baseline {
		had[m] = true
	}
	for _, m := range now {
		if had[m] {
			continue
		}
		var start, end uint64
		if _, err := fmt.Sscanf(m, "%x-%x", &start, &end); err != nil {
			t.Fatalf("%s: mapping %q: %v", what, m, err)
		}
		ok := false
		for _, r := range regions {
			if start >= r.Region && end <= r.Region+r.Size {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("%s: mapping %s is new and info lists no region holding it (regions %+v)", what, m, regions)
		}
	}
}
