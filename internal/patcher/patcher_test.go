package patcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
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

// expectOne waits until thread i printed want after offset from.
func expectOne(t *testing.T, tg *ptracetest.Target, from, i int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := tg.Output()
		for _, line := range strings.Split(out[min(from, len(out)):], "\n") {
			if strings.HasPrefix(line, fmt.Sprintf("t%d ", i)) && strings.Contains(line, want) {
				return
			}
		}
		if time.Now().After(deadline) || !tg.Alive() {
			t.Fatalf("thread %d did not print %q; output:\n%s", i, want, lastLines(out[min(from, len(out)):], 20))
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	p := patchertest.Build(t, patchertest.Spec{ID: "pie-compute", Level: 1, Target: app,
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

func TestPatchNonPIEExecutable(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, false)
	tg := startApp(t, app, "2")
	// Non-PIE code takes addresses as 32-bit immediates (R_X86_64_32):
	// the region must land below 2 GiB.
	p := patchertest.Build(t, patchertest.Spec{ID: "nopie", Level: 1, Target: app, Flags: []string{"-fno-pie", "-mcmodel=small"},
		Source: `
extern int global_counter;
const char *message_hp(void) { return global_counter == 1000 ? "new-nopie" : "bad"; }`,
		Replace: map[string]string{"message": "message_hp"}})
	res := apply(t, tg.Pid, p)
	if res.Patches[0].Base >= 1<<31 {
		t.Errorf("region of a non-PIE patch at %#x, above 2 GiB", res.Patches[0].Base)
	}
	off := expectAll(t, tg, len(tg.Output()), 2, "message=new-nopie")
	unpatch(t, tg.Pid, "nopie")
	expectAll(t, tg, off, 2, "message=old")
}

func TestPatchSharedLibrary(t *testing.T) {
	t.Parallel()
	app, lib := fixture(t, true)
	tg := startApp(t, app, "2")
	p := patchertest.Build(t, patchertest.Spec{ID: "lib", Level: 1, Target: lib, Flags: []string{"-fPIC"},
		Source: `
extern int lib_global;
int lib_value_hp(int x) { return x * 2 + lib_global; }`,
		Replace: map[string]string{"lib_value": "lib_value_hp"}})
	apply(t, tg.Pid, p)
	off := expectAll(t, tg, len(tg.Output()), 2, "lib=302")
	unpatch(t, tg.Pid, "lib")
	expectAll(t, tg, off, 2, "lib=2 ")
}

func TestPatchReferencesProgramFunctionsDataStaticsAndRodata(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	// helper is a program function, global_counter program data,
	// ticks.0 a static local, hidden a static global and greeting a
	// read-only array of the program.
	p := patchertest.Build(t, patchertest.Spec{ID: "refs", Level: 1, Target: app, Flags: []string{"-fPIE"},
		Source: `
int helper(int);
extern int global_counter;
extern int count __asm__("count.0");
extern int hidden;
extern const char greeting[];
int compute_hp(int x) { return helper(x) + global_counter + (count > 0 ? 10000 : 0) + hidden * 100000 + greeting[0]; }
`,
		Replace: map[string]string{"compute": "compute_hp"}})
	apply(t, tg.Pid, p)
	want := fmt.Sprintf("compute=%d", 3+1000+10000+700000+'h')
	off := expectAll(t, tg, len(tg.Output()), 2, want)
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 2, "compute=2 ")
}

func TestPatchUsesLibcFunctionsDataAndIfuncs(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	// snprintf is a plain libc function, strlen and memcpy are ifuncs,
	// and stdout is copied into the executable by a copy relocation:
	// the patch must use the program's copy, or its output is lost.
	p := patchertest.Build(t, patchertest.Spec{ID: "libc", Level: 1, Target: app, Flags: []string{"-fPIE"},
		Source: `
#include <stdio.h>
#include <string.h>
static char buf[64];
const char *message_hp(void) {
	char tmp[32];
	snprintf(tmp, sizeof tmp, "len%zu", strlen("abcdef"));
	memcpy(buf, tmp, strlen(tmp) + 1);
	fputs("via-stdout\n", stdout);
	return buf;
}`,
		Replace: map[string]string{"message": "message_hp"}})
	apply(t, tg.Pid, p)
	off := expectAll(t, tg, len(tg.Output()), 2, "message=len6")
	tg.WaitFor(t, off-200, "via-stdout\n", 5*time.Second)
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 2, "message=old")
}

func TestPatchExecutableTLS(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "3")
	for _, model := range []string{"initial-exec", "local-exec"} {
		p := patchertest.Build(t, patchertest.Spec{ID: "tls-" + model, Level: 1, Target: app, Flags: []string{"-fPIE", "-ftls-model=" + model},
			Source: `
extern __thread int exe_tls;
int tls_value_hp(void) { return exe_tls * 1000; }`,
			Replace: map[string]string{"tls_value": "tls_value_hp"}})
		apply(t, tg.Pid, p)
		// Each thread has its own copy (5 + thread number): the patch
		// must read the calling thread's.
		off := len(tg.Output())
		for i := 0; i < 3; i++ {
			expectOne(t, tg, off, i, fmt.Sprintf("tls=%d ", (5+i)*1000))
		}
		unpatch(t, tg.Pid, "")
		off = len(tg.Output())
		for i := 0; i < 3; i++ {
			expectOne(t, tg, off, i, fmt.Sprintf("tls=%d ", 5+i))
		}
	}
}

func TestPatchLibraryTLS(t *testing.T) {
	t.Parallel()
	app, lib := fixture(t, true)
	tg := startApp(t, app, "2")
	for _, model := range []string{"initial-exec", "global-dynamic"} {
		p := patchertest.Build(t, patchertest.Spec{ID: "libtls-" + model, Level: 1, Target: lib, Flags: []string{"-fPIC", "-ftls-model=" + model},
			Source: `
extern __thread int lib_tls_gd;
int lib_tls_value_hp(void) { return lib_tls_gd + 5000; }`,
			Replace: map[string]string{"lib_tls_value": "lib_tls_value_hp"}})
		apply(t, tg.Pid, p)
		off := expectAll(t, tg, len(tg.Output()), 2, "libtls=5040")
		unpatch(t, tg.Pid, "")
		expectAll(t, tg, off, 2, "libtls=40 ")
	}
}

func TestPatchAddsNewFunctionsAndVariables(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	p := patchertest.Build(t, patchertest.Spec{ID: "new", Level: 1, Target: app, Flags: []string{"-fPIE"},
		Source: `
int new_total = 500;     /* new initialised variable */
static int new_calls;    /* new zero-initialised variable */
__attribute__((noinline)) static int new_twice(int x) { return 2 * x; }
int helper_hp(int x) { new_calls++; return new_twice(x) + new_total + (new_calls > 0); }`,
		Replace: map[string]string{"helper": "helper_hp"}})
	apply(t, tg.Pid, p)
	off := expectAll(t, tg, len(tg.Output()), 2, "helper=503")
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 2, "helper=3 ")
}

func TestStackedPatches(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	first := patchertest.Build(t, patchertest.Spec{ID: "first", Level: 1, Target: app,
		Source: `int compute_a(int x) { return x + 10; }`, Replace: map[string]string{"compute": "compute_a"}})
	second := patchertest.Build(t, patchertest.Spec{ID: "second", Level: 1, Target: app,
		Source: `int compute_b(int x) { return x + 20; }
const char *message_b(void) { return "second"; }`, Replace: map[string]string{"compute": "compute_b", "message": "message_b"}})
	apply(t, tg.Pid, first)
	off := expectAll(t, tg, len(tg.Output()), 2, "compute=11")
	apply(t, tg.Pid, second)
	expectAll(t, tg, off, 2, "compute=21 message=second")
	// The first patch is under the second: it cannot go first.
	_, err := Unpatch(tg.Pid, "first", testOpts)
	if !errors.Is(err, ErrDependency) || !strings.Contains(err.Error(), "second") {
		t.Fatalf("unpatch of the lower patch: %v", err)
	}
	unpatch(t, tg.Pid, "")
	off = expectAll(t, tg, len(tg.Output()), 2, "compute=11 message=old")
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 2, "compute=2 message=old")
}

func TestReplaceByLevelAndSamePatchTwice(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	v1 := patchertest.Build(t, patchertest.Spec{ID: "cve", Level: 1, Target: app,
		Source: `int compute_v1(int x) { return x + 1000; }
const char *message_v1(void) { return "v1"; }`, Replace: map[string]string{"compute": "compute_v1", "message": "message_v1"}})
	v2 := patchertest.Build(t, patchertest.Spec{ID: "cve", Level: 2, Target: app,
		Source: `int compute_v2(int x) { return x + 2000; }`, Replace: map[string]string{"compute": "compute_v2"}})
	apply(t, tg.Pid, v1)
	off := expectAll(t, tg, len(tg.Output()), 2, "compute=1001 message=v1")
	res := apply(t, tg.Pid, v1)
	if res.Patches[0].Status != StatusAlreadyApplied {
		t.Fatalf("second apply of the same patch: %+v", res.Patches)
	}
	res = apply(t, tg.Pid, v2)
	if res.Patches[0].Status != StatusReplaced || res.Patches[0].ReplacedLevel != 1 {
		t.Fatalf("level 2 over level 1: %+v", res.Patches)
	}
	// Level 2 no longer patches message: it is back to the original.
	off = expectAll(t, tg, off, 2, "compute=2001 message=old")
	info, err := Info(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range info.Objects {
		for _, p := range o.Patches {
			n++
			if p.Level != 2 {
				t.Errorf("info shows %s level %d", p.ID, p.Level)
			}
		}
	}
	if n != 1 {
		t.Errorf("info shows %d patches, want 1: %+v", n, info)
	}
	if _, err := Apply(tg.Pid, []*patchfile.Patch{v1}, testOpts); !errors.Is(err, ErrLevel) {
		t.Errorf("level 1 over level 2: %v", err)
	}
	unpatch(t, tg.Pid, "cve")
	expectAll(t, tg, off, 2, "compute=2 message=old")
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after", before, after)
	}
}

func TestUnknownBuildIDIsRefused(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "1")
	p := patchertest.Build(t, patchertest.Spec{ID: "other", Level: 1, Target: app,
		Source: `int compute_hp(int x) { return x + 5; }`, Replace: map[string]string{"compute": "compute_hp"}})
	p.BuildID = []byte{0xde, 0xad, 0xbe, 0xef}
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, testOpts)
	if !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), "deadbeef") {
		t.Fatalf("patch for another build: %v", err)
	}
}

// tiny is 3 bytes and tiny_next follows it at once: the jump goes to a
// trampoline in padding nearby (short_test.go has the refusal when there
// is none).
func TestShortFunctionIsPatchedThroughATrampoline(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "1")
	p := patchertest.Build(t, patchertest.Spec{ID: "tiny", Level: 1, Target: app,
		Source: `int tiny_hp(void) { return 7; }`, Replace: map[string]string{"tiny": "tiny_hp"}})
	apply(t, tg.Pid, p)
	off := expectAll(t, tg, len(tg.Output()), 1, "tiny=7 ")
	unpatch(t, tg.Pid, "tiny")
	expectAll(t, tg, off, 1, "tiny=0 ")
}

func TestBusyFunctionFailsAndLeavesProcessIntact(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2", "spin")
	before := anonMaps(t, tg.Pid)
	orig := readCode(t, tg.Pid, app, "spin_here")
	p := patchertest.Build(t, patchertest.Spec{ID: "busy", Level: 1, Target: app,
		Source: `void spin_here_hp(volatile int *stop) { (void)stop; }`, Replace: map[string]string{"spin_here": "spin_here_hp"}})
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, Options{Retries: 5, Timeout: 2 * time.Second})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Function != "spin_here" || busy.Tid == 0 {
		t.Fatalf("patch of a function a thread spins in: %v", err)
	}
	if !strings.Contains(err.Error(), "spin_here") || !strings.Contains(err.Error(), fmt.Sprint(busy.Tid)) {
		t.Errorf("error does not name the thread and the function: %v", err)
	}
	if got := readCode(t, tg.Pid, app, "spin_here"); string(got) != string(orig) {
		t.Errorf("spin_here changed: % x, was % x", got, orig)
	}
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after the failed patch", before, after)
	}
	if regions, err := FindRegions(tg.Pid, mustMaps(t, tg.Pid)); err != nil || len(regions) != 0 {
		t.Errorf("regions left behind: %v %v", regions, err)
	}
	expectAll(t, tg, len(tg.Output()), 2, "compute=2")
}

func mustMaps(t *testing.T, pid int) []proc.Mapping {
	ms, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestRollbackAfterInjectedFaults(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	origCompute := readCode(t, tg.Pid, app, "compute")
	origMessage := readCode(t, tg.Pid, app, "message")
	p := patchertest.Build(t, patchertest.Spec{ID: "fault", Level: 1, Target: app,
		Source: `int compute_f(int x) { return x + 70; }
const char *message_f(void) { return "faulty"; }`, Replace: map[string]string{"compute": "compute_f", "message": "message_f"}})
	for _, point := range []string{"after-mmap", "after-first-jump"} {
		injected := errors.New("injected fault at " + point)
		opt := testOpts
		opt.fault = func(at string) error {
			if at == point {
				return injected
			}
			return nil
		}
		_, err := Apply(tg.Pid, []*patchfile.Patch{p}, opt)
		if !errors.Is(err, injected) {
			t.Fatalf("%s: %v", point, err)
		}
		if got := readCode(t, tg.Pid, app, "compute"); string(got) != string(origCompute) {
			t.Errorf("%s: compute not restored: % x", point, got)
		}
		if got := readCode(t, tg.Pid, app, "message"); string(got) != string(origMessage) {
			t.Errorf("%s: message not restored: % x", point, got)
		}
		if after := anonMaps(t, tg.Pid); after != before {
			t.Errorf("%s: %d anonymous mappings before, %d after", point, before, after)
		}
		off := len(tg.Output())
		expectAll(t, tg, off, 2, "compute=2 message=old")
	}
	if strings.Contains(tg.Output(), "faulty") || strings.Contains(tg.Output(), "compute=71") {
		t.Error("the patch ran although it was rolled back")
	}
}

func TestBlockingSyscallsContinueAcrossPatch(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "../ptrace/testdata/blockers", Flags: []string{"-O2", "-pthread"}})
	tg := ptracetest.Start(t, exe, "1500")
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	p := patchertest.Build(t, patchertest.Spec{ID: "wake", Level: 1, Target: exe,
		Source: `int value_hp(void) { return 42; }`, Replace: map[string]string{"value": "value_hp"}})
	apply(t, tg.Pid, p)
	unpatch(t, tg.Pid, "")
	apply(t, tg.Pid, p)
	tg.WaitFor(t, 0, "done\n", 10*time.Second)
	out := tg.Output()
	for _, want := range []string{"read ok", "accept ok", "epoll_wait ok", "futex ok", "nanosleep ok", "value=42"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EINTR") || strings.Contains(out, "short") || strings.Contains(out, "failed") {
		t.Errorf("a blocking call was disturbed:\n%s", out)
	}
}

func TestTracedProcessIsRefused(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "1")
	// Stand in for a debugger: another tracer holds the process.
	debugger := ptrace.New(tg.Pid)
	defer debugger.Close()
	if err := debugger.Do(func(c *ptrace.Ctl) error { return c.SeizeAll() }); err != nil {
		t.Fatal(err)
	}
	p := patchertest.Build(t, patchertest.Spec{ID: "dbg", Level: 1, Target: app,
		Source: `int compute_hp(int x) { return x + 5; }`, Replace: map[string]string{"compute": "compute_hp"}})
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, testOpts)
	if !errors.Is(err, ErrTraced) || !strings.Contains(err.Error(), "is traced by pid") {
		t.Fatalf("patch of a traced process: %v", err)
	}
}

func TestThreadsCreatedWhilePatching(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	spawner := testutil.BuildFixture(t, testutil.Build{Dir: "../ptrace/testdata/spawner", Flags: []string{"-O2", "-pthread"}})
	tg := ptracetest.Start(t, spawner)
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	// leaf runs in every new thread; replacing it while threads appear
	// and vanish must neither crash the process nor miss a thread.
	p := patchertest.Build(t, patchertest.Spec{ID: "leaf", Level: 1, Target: spawner,
		Source: `void *leaf_hp(void *a) { return a; }`, Replace: map[string]string{"leaf": "leaf_hp"}})
	for i := 0; i < 20; i++ {
		apply(t, tg.Pid, p)
		unpatch(t, tg.Pid, "")
	}
	off := tg.WaitFor(t, len(tg.Output()), "spawned", 5*time.Second)
	tg.WaitFor(t, off, "spawned", 5*time.Second)
}

func TestManyPatchCycles(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "8")
	before := anonMaps(t, tg.Pid)
	p := patchertest.Build(t, patchertest.Spec{ID: "cycle", Level: 1, Target: app,
		Source: `int compute_c(int x) { return x + 3; }
int helper_c(int x) { return x * 5; }`, Replace: map[string]string{"compute": "compute_c", "helper": "helper_c"}})
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	for i := 0; i < cycles; i++ {
		apply(t, tg.Pid, p)
		unpatch(t, tg.Pid, "")
		if !tg.Alive() {
			t.Fatalf("process died after %d cycles:\n%s", i, lastLines(tg.Output(), 20))
		}
	}
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after %d cycles", before, after, cycles)
	}
	expectAll(t, tg, len(tg.Output()), 8, "compute=2 ")
}

func TestUnpatchWaitsForThreadsInPatchCode(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	// Thread 1 will sleep inside the patch code (a return address into
	// it on its stack, found by unwinding libc's frames), thread 0 spin
	// in it: removing the patch would pull the code from under them.
	p := patchertest.Build(t, patchertest.Spec{ID: "inside", Level: 1, Target: app,
		Source: `
#include <unistd.h>
extern int usleep(unsigned);
int helper_hp(int x) {
	static volatile int spin = 1;
	static int calls;
	if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == 1)
		while (spin)
			;
	usleep(100000000);
	return x;
}`, Replace: map[string]string{"helper": "helper_hp"}})
	apply(t, tg.Pid, p)
	time.Sleep(100 * time.Millisecond)
	_, err := Unpatch(tg.Pid, "", Options{Retries: 3, Timeout: time.Second})
	var busy *BusyError
	if !errors.As(err, &busy) || !strings.Contains(busy.Function, "inside") {
		t.Fatalf("unpatch while threads run patch code: %v", err)
	}
	if regions, err := FindRegions(tg.Pid, mustMaps(t, tg.Pid)); err != nil || len(regions) != 1 {
		t.Fatalf("the patch must stay applied: %d regions, %v", len(regions), err)
	}
	if !tg.Alive() {
		t.Fatal("the process died")
	}
}

func TestUnknownRelocationAndFarDataAreRefused(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "1")
	p := patchertest.Build(t, patchertest.Spec{ID: "odd-reloc", Level: 1, Target: app,
		Source: `int compute_hp(int x) { return x + 5; }`, Replace: map[string]string{"compute": "compute_hp"}})
	p.Relocs = append(p.Relocs, patchfile.Reloc{Section: 0, Offset: 0, Type: 9 /* R_X86_64_GOTPCREL */, Symbol: 0})
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, testOpts)
	if err == nil || !strings.Contains(err.Error(), "R_X86_64_GOTPCREL") || !strings.Contains(err.Error(), "odd-reloc") {
		t.Fatalf("unknown relocation type: %v", err)
	}
	// opterr lives in libc, which a PIE executable does not copy unless
	// it uses it: a direct PC-relative reference cannot reach it.
	far := patchertest.Build(t, patchertest.Spec{ID: "far-data", Level: 1, Target: app, Flags: []string{"-fPIE"},
		Source: `extern int opterr; int compute_hp(int x) { return x + opterr; }`, Replace: map[string]string{"compute": "compute_hp"}})
	_, err = Apply(tg.Pid, []*patchfile.Patch{far}, testOpts)
	if err == nil || !strings.Contains(err.Error(), "opterr") || !strings.Contains(err.Error(), "out of reach") {
		t.Fatalf("data reference out of reach: %v", err)
	}
	if regions, _ := FindRegions(tg.Pid, mustMaps(t, tg.Pid)); len(regions) != 0 {
		t.Fatalf("a refused patch left %d regions", len(regions))
	}
}

func TestSignalsArrivingDuringPatchesAreDelivered(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/signals", Flags: []string{"-O2", "-pthread"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	p := patchertest.Build(t, patchertest.Spec{ID: "sig", Level: 1, Target: exe,
		Source: `int value_hp(void) { return 2; }`, Replace: map[string]string{"value": "value_hp"}})
	for i := 0; i < 30; i++ {
		apply(t, tg.Pid, p)
		unpatch(t, tg.Pid, "")
	}
	apply(t, tg.Pid, p)
	off := tg.WaitFor(t, len(tg.Output()), "value=2", 5*time.Second)
	tg.WaitFor(t, off, "value=2", 5*time.Second)
	if !tg.Alive() {
		t.Fatalf("process died:\n%s", lastLines(tg.Output(), 10))
	}
	// The handler keeps counting: the timer signal was neither lost for
	// good nor left blocked.
	lines := strings.Split(strings.TrimSpace(tg.Output()), "\n")
	var first, last int
	fmt.Sscanf(lines[1], "value=%d handled=%d", new(int), &first)
	fmt.Sscanf(lines[len(lines)-1], "value=%d handled=%d", new(int), &last)
	if last <= first {
		t.Fatalf("signal handler stopped running: %d then %d", first, last)
	}
}

func TestPatchWhenTheMainThreadHasExited(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/leaderexit", Flags: []string{"-O2", "-pthread"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "value=1", 10*time.Second)
	p := patchertest.Build(t, patchertest.Spec{ID: "leader", Level: 1, Target: exe,
		Source: `int value_hp(void) { return 2; }`, Replace: map[string]string{"value": "value_hp"}})
	apply(t, tg.Pid, p)
	off := tg.WaitFor(t, len(tg.Output()), "value=2", 5*time.Second)
	unpatch(t, tg.Pid, "")
	tg.WaitFor(t, off, "value=1", 5*time.Second)
}

func TestUnwindsThroughPatchCode(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	// The threads end up asleep in: worker -> compute_hp (patch "outer")
	// -> helper, redirected to helper_hp (patch "inner") -> usleep. Only
	// by unwinding through inner's code with its call frame information
	// does the checker see the return address into outer's code.
	inner := patchertest.Build(t, patchertest.Spec{ID: "inner", Level: 1, Target: app,
		Source: `
extern int usleep(unsigned);
int helper_hp(int x) {
	if (x == 77)
		usleep(100000000);
	return x * 3;
}`, Replace: map[string]string{"helper": "helper_hp"}})
	outer := patchertest.Build(t, patchertest.Spec{ID: "outer", Level: 1, Target: app,
		Source: `
int helper(int);
int compute_hp(int x) { return helper(77) + x; }`, Replace: map[string]string{"compute": "compute_hp"}})
	apply(t, tg.Pid, inner)
	apply(t, tg.Pid, outer)
	time.Sleep(100 * time.Millisecond)
	_, err := Unpatch(tg.Pid, "outer", Options{Retries: 2, Timeout: time.Second})
	var busy *BusyError
	if !errors.As(err, &busy) || !strings.Contains(busy.Function, "outer") {
		t.Fatalf("unpatch of outer while threads sleep under it: %v", err)
	}
	if busy.Scanned || busy.Frame < 3 {
		t.Fatalf("the return address into outer was not found by unwinding (frame %d, scanned %v): %v", busy.Frame, busy.Scanned, err)
	}
}

func TestInactiveRegionIsReportedAndRemoved(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	proc0, err := Inspect(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	sym, err := proc0.Objects[0].File.Lookup("compute")
	if err != nil {
		t.Fatal(err)
	}
	entry := proc0.Objects[0].Bias + sym.Value
	orig := make([]byte, 5)
	if err := proc.ReadMem(tg.Pid, entry, orig); err != nil {
		t.Fatal(err)
	}
	p := patchertest.Build(t, patchertest.Spec{ID: "forked", Level: 1, Target: app,
		Source: `int compute_hp(int x) { return x + 9; }`, Replace: map[string]string{"compute": "compute_hp"}})
	res := apply(t, tg.Pid, p)
	info, err := Info(tg.Pid)
	if err != nil || !info.Objects[0].Patches[0].Active {
		t.Fatalf("freshly applied patch not active: %+v %v", info, err)
	}
	// What a child forked between the mapping and the jumps looks like:
	// the region without its jumps.
	mem, err := proc.OpenMem(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := mem.WriteAt(orig, entry); err != nil {
		t.Fatal(err)
	}
	info, err = Info(tg.Pid)
	if err != nil || info.Objects[0].Patches[0].Active {
		t.Fatalf("patch without its jumps reported active: %+v %v", info, err)
	}
	out := unpatch(t, tg.Pid, "")
	if len(out.Patches) != 1 || out.Patches[0].Base != res.Patches[0].Base {
		t.Fatalf("unpatch of the inactive region: %+v", out)
	}
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after", before, after)
	}
	expectAll(t, tg, len(tg.Output()), 2, "compute=2 ")
}

func TestThreadInUninterruptibleSleepIsRefused(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/vforker", Flags: []string{"-O2", "-pthread"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "ready\n", 10*time.Second)
	tg.WaitFor(t, 0, "child ", 10*time.Second)
	var child int
	for _, line := range strings.Split(tg.Output(), "\n") {
		if _, err := fmt.Sscanf(line, "child %d", &child); err == nil {
			break
		}
	}
	if child <= 0 {
		t.Fatalf("no child pid in:\n%s", tg.Output())
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	before := anonMaps(t, tg.Pid)
	p := patchertest.Build(t, patchertest.Spec{ID: "dstate", Level: 1, Target: exe,
		Source: `int value_hp(void) { return 2; }`, Replace: map[string]string{"value": "value_hp"}})
	start := time.Now()
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, Options{Retries: 3, Timeout: 500 * time.Millisecond})
	if !errors.Is(err, ErrUnstoppable) || !strings.Contains(err.Error(), "state D") {
		t.Fatalf("patch with a thread in vfork: %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("refusal took %v", time.Since(start))
	}
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after", before, after)
	}
	off := len(tg.Output())
	tg.WaitFor(t, off, "value=1", 5*time.Second)
	// Once the child is gone the process can be patched.
	_ = syscall.Kill(child, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = Apply(tg.Pid, []*patchfile.Patch{p}, testOpts)
		if err == nil || !errors.Is(err, ErrUnstoppable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("patch after the vfork child exited: %v", err)
	}
	tg.WaitFor(t, len(tg.Output()), "value=2", 5*time.Second)
}

// throwingPatch replaces the C++ fixtures' parse with code that throws
// and catches an exception inside the patch, and returns caught on empty
// input: the program's unwinder must find the patch's FDE and LSDA.
func throwingPatch(t *testing.T, exe, id string, caught int) *patchfile.Patch {
	t.Helper()
	return patchertest.Build(t, patchertest.Spec{ID: id, Level: 1, Target: exe, CXX: true, Flags: []string{"-fPIC"},
		Source: fmt.Sprintf(`
#include <stdexcept>
extern "C" int parse_hp(const char *s) {
	try {
		if (!s[0])
			throw std::invalid_argument("empty");
		return 1;
	} catch (const std::exception &) {
		return %d;
	}
}`, caught), Replace: map[string]string{"parse": "parse_hp"}})
}

func TestCxxExceptionsThroughPatchCode(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/cxxapp", Flags: []string{"-O2"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "parse=-1", 10*time.Second)
	before := anonMaps(t, tg.Pid)
	// The exception is thrown and caught inside the patch code: the
	// program's unwinder must find the patch's FDE and LSDA.
	p := throwingPatch(t, exe, "throws", -7)
	for round := 0; round < 3; round++ {
		apply(t, tg.Pid, p)
		off := tg.WaitFor(t, len(tg.Output()), "parse=-7\n", 5*time.Second)
		tg.WaitFor(t, off, "parse=-7\n", 5*time.Second)
		unpatch(t, tg.Pid, "")
		tg.WaitFor(t, len(tg.Output()), "parse=-1\n", 5*time.Second)
	}
	expectThrowerIntact(t, tg, before)
}

// expectThrowerIntact checks a C++ target that throws all the time after
// its patches came and went: it runs, no exception escaped to terminate,
// and no mapping was left behind.
func expectThrowerIntact(t *testing.T, tg *ptracetest.Target, anonBefore int) {
	t.Helper()
	if !tg.Alive() || strings.Contains(tg.Output(), "terminate") {
		t.Fatalf("the program died or an exception escaped:\n%s", lastLines(tg.Output(), 5))
	}
	if after := anonMaps(t, tg.Pid); after != anonBefore {
		t.Errorf("%d anonymous mappings before, %d after", anonBefore, after)
	}
}

func TestPatchCallsAnIfuncOfTheProgram(t *testing.T) {
	t.Parallel()
	app, _ := fixture(t, true)
	tg := startApp(t, app, "2")
	p := patchertest.Build(t, patchertest.Spec{ID: "pick", Level: 1, Target: app,
		Source: `int pick(int); int compute_hp(int x) { return pick(x) * 10; }`, Replace: map[string]string{"compute": "compute_hp"}})
	apply(t, tg.Pid, p)
	off := expectAll(t, tg, len(tg.Output()), 2, "compute=60 ")
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 2, "compute=2 ")
}
