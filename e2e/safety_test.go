package e2e

// The safety cases (issue 10): programs whose shape defeats a check that
// only looks at threads once. Each is built -O2 -g by its own Makefile
// from testdata/safety/NAME, patched with patches that hotpatch build
// made from the folder's diffs, through the real command line.

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

// buildSafety builds the program of testdata/safety/name and, for each
// diff, a patch directory; it returns the case and the directories by
// diff name (without ".diff"), and the output of each build.
func buildSafety(t *testing.T, name string, diffs ...string) (testCase, *builtCase, map[string]string, map[string]string) {
	t.Helper()
	testutil.RequireGCC(t)
	testutil.RequirePtrace(t)
	if hotpatchBinary == "" {
		hotpatchBinary = testutil.HotpatchBinary(t)
	}
	c := testCase{name: name, dir: filepath.Join("testdata", "safety", name), spec: spec{Program: "prog"}}
	dir, err := os.MkdirTemp(workDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	copyTree(t, filepath.Join(c.dir, "src"), src)
	copyFile(t, filepath.Join("testdata", "common", "harness.h"), filepath.Join(src, "harness.h"))
	run(t, src, nil, "make")
	b := &builtCase{srcDir: src, program: filepath.Join(src, "prog")}
	dirs, outs := map[string]string{}, map[string]string{}
	for _, d := range diffs {
		out := filepath.Join(dir, "patch-"+d)
		outs[d] = hotpatch(t, "build", "-C", src, "-o", out, "--id", name+"-"+d, "--target", b.program,
			abs(t, filepath.Join(c.dir, d+".diff")))
		dirs[d] = out
	}
	return c, b, dirs, outs
}

// patchJSON applies and returns the process's outcome.
type outcome struct {
	Processes []struct {
		Status  string `json:"status"`
		PauseUS int64  `json:"pause_us"`
		Retries int    `json:"retries"`
		Error   string `json:"error"`
	} `json:"processes"`
}

func runJSON(t *testing.T, args ...string) (outcome, error) {
	t.Helper()
	out, err := hotpatchErr(args...)
	var o outcome
	if jerr := json.Unmarshal([]byte(out[:strings.LastIndexByte(out, '}')+1]), &o); jerr != nil || len(o.Processes) != 1 {
		t.Fatalf("hotpatch %s: no JSON outcome (%v):\n%s", strings.Join(args, " "), jerr, out)
	}
	return o, err
}

// TestSleepingFrame: a thread sleeps inside tick() (1 s per call) all the
// time. Patch and unpatch succeed with the default options, waiting for
// the frame to return, and take effect.
func TestSleepingFrame(t *testing.T) {
	t.Parallel()
	c, b, dirs, _ := buildSafety(t, "sleeping", "fix")
	p := startProgram(t, c, b)
	p.expect(t, "go", []string{"version=1"})
	before := mappings(t, p.pid)
	patch(t, p.pid, dirs["fix"])
	p.expect(t, "go", []string{"version=2"})
	hotpatch(t, "unpatch", "-p", p.pid)
	p.expect(t, "go", []string{"version=1"})
	p.noEINTR(t)
	if after := mappings(t, p.pid); after != before {
		t.Errorf("%d mappings before, %d after patch and unpatch: the page of return hooks or the region leaked", before, after)
	}
}

// TestSleepingFrameSurvivesKilledTracer: hotpatch is killed while it
// waits with a return hook planted; the target goes on unharmed and a
// later patch applies.
func TestSleepingFrameSurvivesKilledTracer(t *testing.T) {
	t.Parallel()
	c, b, dirs, _ := buildSafety(t, "sleeping", "fix")
	p := startProgram(t, c, b)
	p.expect(t, "go", []string{"version=1"})
	// hotpatch maps the patch region, then, in the pause, the page of
	// return hooks: two new mappings mean the hook is planted and the
	// thread runs towards it. Killed then, three times.
	kills := 0
	for attempt := 0; attempt < 10 && kills < 3; attempt++ {
		before := mappings(t, p.pid)
		cmd := exec.Command(hotpatchBinary, "patch", "-p", p.pid, dirs["fix"])
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		planted := false
		for !planted {
			select {
			case <-exited:
			case <-time.After(time.Millisecond):
				planted = mappings(t, p.pid) >= before+2
				continue
			}
			break
		}
		if planted {
			_ = cmd.Process.Kill()
			kills++
		}
		<-exited
		p.expect(t, "go", []string{"version="})
		unpatchAll(t, p.pid)
	}
	if kills == 0 {
		t.Fatal("hotpatch never got to plant a hook before it finished; the kill was not exercised")
	}
	p.noEINTR(t)
	unpatchAll(t, p.pid)
	patch(t, p.pid, dirs["fix"])
	p.expect(t, "go", []string{"version=2"})
	unpatchAll(t, p.pid)
	p.expect(t, "go", []string{"version=1"})
	p.noEINTR(t)
}

// TestHotThreads: 8 threads call hot() in tight loops while others block
// in read, futex and nanosleep. 100 patch and unpatch cycles with the
// default options each succeed at the first call; the program sees only
// old or new results and never EINTR.
func TestHotThreads(t *testing.T) {
	t.Parallel()
	c, b, dirs, _ := buildSafety(t, "hot", "fix")
	p := startProgram(t, c, b)
	p.expect(t, "reset", []string{"old=yes", "bad=0", "eintr=0"})
	var pauses []int64
	for i := 0; i < 100; i++ {
		o, err := runJSON(t, "patch", "-p", p.pid, "--json", dirs["fix"])
		if err != nil {
			t.Fatalf("cycle %d: patch failed: %v: %s", i, err, o.Processes[0].Error)
		}
		pauses = append(pauses, o.Processes[0].PauseUS)
		if i == 0 {
			// The spinners may wait for a CPU on a busy machine: a few
			// looks, until they ran the new code.
			for k := 0; ; k++ {
				out := p.ask(t, "reset")
				if !strings.Contains(out, "bad=0") || !strings.Contains(out, "eintr=0") {
					t.Fatalf("pid %s saw a value neither old nor new, or EINTR:\n%s", p.pid, out)
				}
				if strings.Contains(out, "new=yes") {
					break
				}
				if k == 20 {
					t.Fatalf("pid %s does not run the new hot() after the patch:\n%s", p.pid, out)
				}
			}
		}
		o, err = runJSON(t, "unpatch", "-p", p.pid, "--json")
		if err != nil {
			t.Fatalf("cycle %d: unpatch failed: %v: %s", i, err, o.Processes[0].Error)
		}
		pauses = append(pauses, o.Processes[0].PauseUS)
	}
	// A thread may have called the new code just before the last unpatch
	// and count the result only when it next gets a CPU: after a few
	// resets, only old results are counted.
	for i := 0; ; i++ {
		out := p.ask(t, "reset")
		if strings.Contains(out, "new=no") {
			break
		}
		if i == 20 {
			t.Fatalf("pid %s still runs the new hot() after the unpatch:\n%s", p.pid, out)
		}
	}
	p.expect(t, "reset", []string{"old=yes", "new=no", "bad=0", "eintr=0"})
	p.noEINTR(t)
	t.Logf("pauses (µs) of 200 operations: %v", pauses)
}

// coroutineCase: a coroutine suspended inside suspend_in() makes a patch
// of suspend_in fail, naming the coroutine, and the program goes on; a
// patch of called(), which a coroutine calls but is not inside, applies
// and takes effect.
func coroutineCase(t *testing.T, name, kind string) {
	c, b, dirs, _ := buildSafety(t, name, "fix-suspended", "fix-called")
	p := startProgram(t, c, b)
	p.expect(t, "go", []string{"called=7"})
	before := mappings(t, p.pid)
	out, err := hotpatchErr("patch", "-p", p.pid, "--timeout", "1s", dirs["fix-suspended"])
	if err == nil {
		t.Fatalf("patch of suspend_in applied while a coroutine is suspended inside it:\n%s", out)
	}
	if !strings.Contains(out, "coroutine") || !strings.Contains(out, kind) || !strings.Contains(out, "suspend_in") {
		t.Errorf("the refusal does not name the coroutine's %s and suspend_in:\n%s", kind, out)
	}
	if after := mappings(t, p.pid); after != before {
		t.Errorf("%d mappings before, %d after the refused patch", before, after)
	}
	p.expect(t, "resume1", []string{"co1 suspended again"})
	p.expect(t, "go", []string{"called=7"})

	patch(t, p.pid, dirs["fix-called"])
	p.expect(t, "go", []string{"called=8"})
	p.expect(t, "resume1", []string{"co1 suspended again"})
	unpatchAll(t, p.pid)
	p.expect(t, "go", []string{"called=7"})
	p.noEINTR(t)
}

func TestUcontextCoroutine(t *testing.T) {
	t.Parallel()
	coroutineCase(t, "ucontext", "ucontext_t")
}

func TestSigsetjmpCoroutine(t *testing.T) {
	t.Parallel()
	coroutineCase(t, "sigjmp", "jmp_buf")
}

// TestChangeInlinedIntoMain: the change is inlined into main, whose loop
// never ends. The build warns, naming main and the inlined function; the
// patch is refused at once, saying why.
func TestChangeInlinedIntoMain(t *testing.T) {
	t.Parallel()
	c, b, dirs, outs := buildSafety(t, "inlined-main", "fix")
	if w := outs["fix"]; !strings.Contains(w, "warning") || !strings.Contains(w, "main changed but never returns") || !strings.Contains(w, "work") {
		t.Errorf("hotpatch build does not warn that main never returns and that work was inlined into it:\n%s", w)
	}
	_ = c
	p := &program{proc: testutil.StartCmd(t, exec.Command(b.program))}
	p.pid = p.waitLinePrefix(t, "ready pid=")
	start := time.Now()
	out, err := hotpatchErr("patch", "-p", p.pid, dirs["fix"])
	if err == nil {
		t.Fatalf("a patch of main, which never returns, applied:\n%s", out)
	}
	if !strings.Contains(out, "inside main") || !strings.Contains(out, "never returns") || !strings.Contains(out, "noinline") {
		t.Errorf("the refusal does not say that main never returns and what to do:\n%s", out)
	}
	t.Logf("refused after %v: %s", time.Since(start), out)
	if done, err := p.proc.Exited(); done {
		t.Fatalf("the program exited: %v", err)
	}
}

// mappings counts the lines of /proc/PID/maps.
func mappings(t *testing.T, pid string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
