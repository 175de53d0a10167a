package patcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) {
	if err := ptracetest.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "become subreaper:", err)
		os.Exit(1)
	}
	testutil.Main(m)
}

var testOpts = Options{Retries: 100, Timeout: 10 * time.Second}

// fixture builds the library and the app linked against it; pie chooses
// a position-independent or a fixed-address executable.
func fixture(t *testing.T, pie bool) (app, lib string) {
	t.Helper()
	testutil.RequirePtrace(t)
	lib = testutil.BuildFixture(t, testutil.Build{Dir: "testdata/fixlib", Shared: true, Flags: []string{"-O2", "-g"}})
	flags := []string{"-O2", "-g", "-pthread"}
	name := "app"
	if pie {
		flags = append(flags, "-fPIE", "-pie")
	} else {
		flags = append(flags, "-fno-pie", "-no-pie")
		name = "app-nopie"
	}
	dir := filepath.Dir(lib)
	app = testutil.BuildFixture(t, testutil.Build{Dir: "testdata/app", Name: name, Flags: flags,
		LinkFlags: []string{"-L" + dir, "-lfixlib", "-Wl,-rpath," + dir}})
	return app, lib
}

// startApp runs the app with n threads and waits until every thread
// printed a line.
func startApp(t *testing.T, app string, args ...string) *ptracetest.Target {
	t.Helper()
	tg := ptracetest.Start(t, app, args...)
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	tg.WaitFor(t, 0, "t0 compute=", 10*time.Second)
	return tg
}

// expectAll waits until every thread 0..n-1 printed want after offset
// from, and returns the offset of the end of the output then.
func expectAll(t *testing.T, tg *ptracetest.Target, from, n int, want string) int {
	t.Helper()
	end := from
	for i := 0; i < n; i++ {
		end = max(end, tg.WaitFor(t, from, fmt.Sprintf("t%d %s", i, ""), 10*time.Second))
		deadline := time.Now().Add(10 * time.Second)
		for {
			out := tg.Output()
			found := false
			for _, line := range strings.Split(out[min(from, len(out)):], "\n") {
				if strings.HasPrefix(line, fmt.Sprintf("t%d ", i)) && strings.Contains(line, want) {
					found = true
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) || !tg.Alive() {
				t.Fatalf("thread %d did not print %q; output since the change:\n%s", i, want, lastLines(out[min(from, len(out)):], 20))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return len(tg.Output())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// anonMaps counts the anonymous mappings of pid, to detect leaked regions.
func anonMaps(t *testing.T, pid int) int {
	t.Helper()
	ms, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.IsAnonymous() {
			n++
		}
	}
	return n
}

func readCode(t *testing.T, pid int, app, fn string) []byte {
	t.Helper()
	p, err := Inspect(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.Objects {
		if o.Path != app && filepath.Base(o.Path) != filepath.Base(app) {
			continue
		}
		s, err := o.File.Lookup(fn)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, s.Size)
		if err := proc.ReadMem(pid, o.Bias+s.Value, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("%s is not loaded in pid %d", app, pid)
	return nil
}

func apply(t *testing.T, pid int, ps ...*patchfile.Patch) *Result {
	t.Helper()
	res, err := Apply(pid, ps, testOpts)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func unpatch(t *testing.T, pid int, id string) *Result {
	t.Helper()
	res, err := Unpatch(pid, id, testOpts)
	if err != nil {
		t.Fatalf("unpatch %q: %v", id, err)
	}
	return res
}

func TestPatchPIEExecutable(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "3")
	before := anonMaps(t, tg.Pid)
	orig := readCode(t, tg.Pid, app, "compute")
	p := buildPatch(t, patchSpec{ID: "pie-compute", Level: 1, Target: app,
		Source: `int compute_hp(int x) { return x + 100; }`, Replace: map[string]string{"compute": "compute_hp"}})
	res := apply(t, tg.Pid, p)
	if len(res.Patches) != 1 || res.Patches[0].Status != StatusApplied || res.PauseUS <= 0 {
		t.Fatalf("result %+v", res)
	}
	off := expectAll(t, tg, len(tg.Output()), 3, "compute=101")

	info, err := Info(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var found *PatchInfo
	for _, o := range info.Objects {
		for i := range o.Patches {
			if o.Path == app || filepath.Base(o.Path) == "app" {
				found = &o.Patches[i]
			}
		}
	}
	if found == nil || found.ID != "pie-compute" || found.Level != 1 || strings.Join(found.Functions, ",") != "compute" || found.PauseUS != res.PauseUS {
		t.Fatalf("info does not show the patch: %+v", info)
	}

	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 3, "compute=2 ")
	if got := readCode(t, tg.Pid, app, "compute"); string(got) != string(orig) {
		t.Errorf("compute after unpatch: % x, original % x", got, orig)
	}
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after unpatch", before, after)
	}
	if _, err := Unpatch(tg.Pid, "", testOpts); !errors.Is(err, ErrNotPatched) {
		t.Errorf("unpatch of an unpatched process: %v", err)
	}
}
