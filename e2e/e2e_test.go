// Package e2e proves the whole pipeline through the real command line: for
// every case under testdata/cases a program is built, started, patched
// with a patch that `hotpatch build` made from the case's diff, checked,
// unpatched and checked again. Each case also runs a second time with a
// fresh process patched through one directory holding the patches of every
// case, so that each process picks exactly the patches for its objects.
package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// spec is a case's case.json.
type spec struct {
	// Program is the executable the case's build produces, relative to
	// its source folder.
	Program string            `json:"program"`
	Env     map[string]string `json:"env"`
	// Targets are the deployed objects, relative to the source folder,
	// that hotpatch build is told to reproduce (--target); the program
	// alone when empty.
	Targets []string `json:"targets"`
	// Kind selects a scenario beyond the common flow: "busy", "blocked"
	// or "stacked".
	Kind string `json:"kind"`
	// Before, After, AfterAgain and Unpatched list lines the program must
	// print for one "go" request at each point of the flow. Unpatched
	// defaults to Before.
	Before     []string `json:"before"`
	After      []string `json:"after"`
	AfterAgain []string `json:"after_again"`
	Unpatched  []string `json:"unpatched"`
	// Functions lists, per object file name, functions that the object's
	// patch must replace (it may replace more, such as callers into which
	// a changed function was inlined).
	Functions map[string][]string `json:"functions"`
	// NoPatchFor names objects that must get no patch.
	NoPatchFor []string `json:"no_patch_for"`
	// UnpatchByID removes the case's patches with one "unpatch -i ID"
	// (the case name), which must list every target object as removed.
	UnpatchByID bool `json:"unpatch_by_id"`
}

type testCase struct {
	name string
	dir  string
	spec spec
}

var (
	// hotpatchBinary is the command under test.
	hotpatchBinary string
	// workDir holds the cases' built trees; they outlive the subtest that
	// built them, for the directory flow.
	workDir string
	// shared collects every case's patches for the directory flow.
	sharedDir string
)

func TestMain(m *testing.M) {
	testutil.Main(runner(func() int {
		tmp, err := os.MkdirTemp("", "hotpatch-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		workDir = tmp
		sharedDir = filepath.Join(tmp, "all-patches")
		if err := os.MkdirAll(sharedDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}))
}

// runner lets TestMain do its set-up inside testutil.Main, which removes
// the hotpatch binary and fixtures afterwards.
type runner func() int

func (r runner) Run() int { return r() }

func loadCases(t *testing.T) []testCase {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("testdata", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join("testdata", "cases", e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "case.json"))
		if err != nil {
			t.Fatalf("case %s: %v", e.Name(), err)
		}
		var s spec
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("case %s: case.json: %v", e.Name(), err)
		}
		if s.Unpatched == nil {
			s.Unpatched = s.Before
		}
		cases = append(cases, testCase{name: e.Name(), dir: dir, spec: s})
	}
	return cases
}

// TestCases runs every case: first each on its own (building its patches
// into the shared directory as it goes), then each again through the
// shared directory.
func TestCases(t *testing.T) {
	testutil.RequireGCC(t)
	testutil.RequirePtrace(t)
	hotpatchBinary = testutil.HotpatchBinary(t)
	cases := loadCases(t)
	built := map[string]*builtCase{}
	var mu sync.Mutex
	t.Run("own-patch", func(t *testing.T) {
		for _, c := range cases {
			c := c
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				b := buildCase(t, c)
				mu.Lock()
				built[c.name] = b
				mu.Unlock()
				runCase(t, c, b, b.patchDir)
			})
		}
	})
	t.Run("directory", func(t *testing.T) {
		for _, c := range cases {
			c := c
			b := built[c.name]
			if b == nil || c.spec.Kind != "" {
				// Special scenarios manage their own patches; the
				// common flow covers the directory for the others.
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				runCase(t, c, b, sharedDir)
			})
		}
	})
}

// builtCase is a case's program, built the way it is deployed, and the
// patches hotpatch build made for it.
type builtCase struct {
	srcDir   string
	program  string
	patchDir string
	patches  []*patchfile.Patch
}

// targetArgs are the --target flags naming every deployed object.
func (b *builtCase) targetArgs(c testCase) []string {
	targets := c.spec.Targets
	if len(targets) == 0 {
		targets = []string{c.spec.Program}
	}
	var args []string
	for _, tg := range targets {
		args = append(args, "--target", filepath.Join(b.srcDir, tg))
	}
	return args
}

func buildCase(t *testing.T, c testCase) *builtCase {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, c.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	copyTree(t, filepath.Join(c.dir, "src"), src)
	copyFile(t, filepath.Join("testdata", "common", "harness.h"), filepath.Join(src, "harness.h"))
	run(t, src, nil, "make")
	b := &builtCase{srcDir: src, program: filepath.Join(src, c.spec.Program), patchDir: filepath.Join(src, "patchroot")}

	if c.spec.Kind == "stacked" {
		return b // stacked builds several patches itself
	}
	args := []string{"build", "-C", src, "-o", b.patchDir, "--id", c.name}
	args = append(args, b.targetArgs(c)...)
	out := hotpatch(t, append(args, abs(t, filepath.Join(c.dir, "fix.diff")))...)
	t.Logf("hotpatch build:\n%s", out)
	b.patches = readPatches(t, b.patchDir)
	checkFunctionTables(t, c, b)
	for _, p := range b.patches {
		copyFile(t, filepath.Join(b.patchDir, p.FileName()), filepath.Join(sharedDir, p.FileName()))
	}
	return b
}

// checkFunctionTables checks each patch against the object it targets.
func checkFunctionTables(t *testing.T, c testCase, b *builtCase) {
	t.Helper()
	byObject := map[string]*patchfile.Patch{}
	for _, p := range b.patches {
		byObject[filepath.Base(p.Target)] = p
	}
	for object, want := range c.spec.Functions {
		p := byObject[object]
		if p == nil {
			t.Fatalf("no patch for %s; patches: %v", object, targets(b.patches))
		}
		have := map[string]bool{}
		for _, f := range p.Funcs {
			have[f.Name] = true
		}
		for _, fn := range want {
			if !have[fn] {
				t.Errorf("patch for %s does not replace %s; it replaces %v", object, fn, funcNames(p))
			}
		}
		raw, err := elfobj.BuildIDOfFile(filepath.Join(b.srcDir, object))
		if err != nil {
			t.Fatal(err)
		}
		if id := hex.EncodeToString(raw); p.BuildIDString() != id {
			t.Errorf("patch for %s targets build-id %s, the deployed object has %s", object, p.BuildIDString(), id)
		}
	}
	for _, object := range c.spec.NoPatchFor {
		if byObject[object] != nil {
			t.Errorf("%s got a patch although the diff does not change it: %v", object, funcNames(byObject[object]))
		}
	}
}

func runCase(t *testing.T, c testCase, b *builtCase, patchArg string) {
	t.Helper()
	switch c.spec.Kind {
	case "busy":
		runBusy(t, c, b, patchArg)
		return
	case "blocked":
		runBlocked(t, c, b, patchArg)
		return
	case "stacked":
		runStacked(t, c, b)
		return
	}
	p := startProgram(t, c, b)
	p.expect(t, "go", c.spec.Before)
	patch(t, p.pid, patchArg)
	p.expect(t, "go", c.spec.After)
	if c.spec.AfterAgain != nil {
		p.expect(t, "go", c.spec.AfterAgain)
	}
	if c.spec.UnpatchByID {
		unpatchByID(t, c, p.pid)
	}
	unpatchAll(t, p.pid)
	p.expect(t, "go", c.spec.Unpatched)
	p.noEINTR(t)
}

func runBusy(t *testing.T, c testCase, b *builtCase, patchArg string) {
	p := startProgram(t, c, b)
	p.expect(t, "go", c.spec.Before)
	p.expect(t, "hold", []string{"holding"})

	// Bounded: the thread never leaves, so the patch fails cleanly.
	out, err := hotpatchErr("patch", "-p", p.pid, "--retries", "3", "--timeout", "300ms", patchArg)
	if err == nil {
		t.Fatalf("patch succeeded while a thread was inside busy():\n%s", out)
	}
	if !strings.Contains(out, "busy") {
		t.Errorf("the failure does not name the function busy: %s", out)
	}
	p.expect(t, "alive", []string{"alive"})
	if info := hotpatch(t, "info", "-p", p.pid, "--json"); strings.Contains(info, `"id": "busy"`) {
		t.Fatalf("a failed patch left something applied:\n%s", info)
	}

	// Waiting: the thread leaves while the patcher retries, and it applies.
	done := make(chan error, 1)
	var patchOut string
	go func() {
		var err error
		patchOut, err = hotpatchErr("patch", "-p", p.pid, "--retries", "1000", "--timeout", "20s", patchArg)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	p.expect(t, "release", []string{"released"})
	if err := <-done; err != nil {
		t.Fatalf("patch did not succeed after the thread left busy(): %v\n%s", err, patchOut)
	}
	p.expect(t, "go", c.spec.After)
	unpatchAll(t, p.pid)
	p.expect(t, "go", c.spec.Unpatched)
	p.noEINTR(t)
}

func runBlocked(t *testing.T, c testCase, b *builtCase, patchArg string) {
	p := startProgram(t, c, b)
	port := p.waitLinePrefix(t, "port=")
	p.expect(t, "go", c.spec.Before)
	patch(t, p.pid, patchArg)
	p.expect(t, "go", c.spec.After)
	unpatchAll(t, p.pid)
	p.expect(t, "go", c.spec.Unpatched)
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("connect to the program's accept(): %v", err)
	}
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := p.ask(t, "go")
		if strings.Contains(out, "accept=accepted") {
			break
		}
		if strings.Contains(out, "accept=EINTR") || time.Now().After(deadline) {
			t.Fatalf("accept() after the patch cycle: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := p.ask(t, "go"); !strings.Contains(out, "short-sleeps=0") {
		t.Fatalf("a sleep was cut short: %s", out)
	}
	p.noEINTR(t)
}

func runStacked(t *testing.T, c testCase, b *builtCase) {
	diff := func(name string) string { return abs(t, filepath.Join(c.dir, name)) }
	dirA := filepath.Join(b.srcDir, "patch-a")
	dirB := filepath.Join(b.srcDir, "patch-b")
	dirA2 := filepath.Join(b.srcDir, "patch-a2")
	hotpatch(t, "build", "-C", b.srcDir, "-o", dirA, "--id", "stack-a", "--level", "1", "--target", b.program, diff("fix.diff"))
	hotpatch(t, "build", "-C", b.srcDir, "-o", dirB, "--id", "stack-b", "--level", "1", "--target", b.program, diff("fix.diff"), diff("fix2.diff"))
	hotpatch(t, "build", "-C", b.srcDir, "-o", dirA2, "--id", "stack-a", "--level", "2", "--target", b.program, diff("fix-level2.diff"))

	p := startProgram(t, c, b)
	p.expect(t, "go", []string{"version=1"})
	patch(t, p.pid, dirA)
	p.expect(t, "go", []string{"version=2"})
	patch(t, p.pid, dirB)
	p.expect(t, "go", []string{"version=3"})

	// Applying the same patch again changes nothing and is not an error.
	patch(t, p.pid, dirB)
	p.expect(t, "go", []string{"version=3"})

	// stack-b replaced what stack-a replaced: removing stack-a first is
	// refused, naming stack-b.
	out, err := hotpatchErr("unpatch", "-p", p.pid, "-i", "stack-a")
	if err == nil || !strings.Contains(out, "stack-b") {
		t.Fatalf("unpatching stack-a under stack-b: err=%v, output %q", err, out)
	}
	p.expect(t, "go", []string{"version=3"})

	hotpatch(t, "unpatch", "-p", p.pid) // the newest: stack-b
	p.expect(t, "go", []string{"version=2"})

	// A higher level of stack-a replaces level 1 in one step.
	patch(t, p.pid, dirA2)
	p.expect(t, "go", []string{"version=4"})
	info := hotpatch(t, "info", "-p", p.pid, "--json")
	if strings.Count(info, `"stack-a"`) != 1 || !strings.Contains(info, `"level": 2`) {
		t.Fatalf("after the level-2 replacement, info shows:\n%s", info)
	}
	hotpatch(t, "unpatch", "-p", p.pid)
	p.expect(t, "go", []string{"version=1"})
	p.noEINTR(t)
}

// program is a running case program driven through its stdin.
type program struct {
	proc *testutil.Process
	pid  string
	read int
}

func startProgram(t *testing.T, c testCase, b *builtCase) *program {
	t.Helper()
	env := os.Environ()
	for k, v := range c.spec.Env {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(b.program)
	cmd.Dir = b.srcDir
	cmd.Env = env
	p := &program{proc: testutil.StartCmd(t, cmd)}
	p.pid = fmt.Sprint(p.proc.Pid)
	p.read = p.proc.WaitFor(t, 0, "ready pid=", 10*time.Second)
	return p
}

// ask sends one request and returns what the program printed for it.
func (p *program) ask(t *testing.T, request string) string {
	t.Helper()
	if _, err := io.WriteString(p.proc.Stdin, request+"\n"); err != nil {
		t.Fatalf("send %q to pid %s: %v", request, p.pid, err)
	}
	start := p.read
	p.read = p.proc.WaitFor(t, start, "--end--\n", 20*time.Second)
	return p.proc.Output()[start:p.read]
}

func (p *program) expect(t *testing.T, request string, want []string) {
	t.Helper()
	out := p.ask(t, request)
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("pid %s, request %q: want %q in:\n%s", p.pid, request, w, out)
		}
	}
}

func (p *program) waitLinePrefix(t *testing.T, prefix string) string {
	t.Helper()
	p.proc.WaitFor(t, 0, prefix, 10*time.Second)
	out := p.proc.Output()
	i := strings.Index(out, prefix) + len(prefix)
	return strings.TrimSpace(out[i : i+strings.IndexByte(out[i:], '\n')])
}

func (p *program) noEINTR(t *testing.T) {
	t.Helper()
	if out := p.proc.Output(); strings.Contains(out, "EINTR") {
		t.Fatalf("pid %s saw EINTR:\n%s", p.pid, out)
	}
	if done, err := p.proc.Exited(); done {
		t.Fatalf("pid %s exited: %v", p.pid, err)
	}
}

func patch(t *testing.T, pid, arg string) {
	t.Helper()
	out := hotpatch(t, "patch", "-p", pid, "--json", arg)
	t.Logf("hotpatch patch -p %s %s:\n%s", pid, arg, out)
}

// unpatchAll removes every patch applied to the process, newest first.
func unpatchAll(t *testing.T, pid string) {
	t.Helper()
	for i := 0; i < 10; i++ {
		var info struct {
			Processes []struct {
				Objects []struct {
					Patches []json.RawMessage `json:"patches"`
				} `json:"objects"`
			} `json:"processes"`
		}
		out := hotpatch(t, "info", "-p", pid, "--json")
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("info --json: %v\n%s", err, out)
		}
		n := 0
		for _, pr := range info.Processes {
			for _, o := range pr.Objects {
				n += len(o.Patches)
			}
		}
		if n == 0 {
			return
		}
		hotpatch(t, "unpatch", "-p", pid)
	}
	t.Fatalf("pid %s still has patches after 10 unpatches", pid)
}

// unpatchByID removes the case's id in one command and checks that every
// object of the case lost its part, and nothing is left applied.
func unpatchByID(t *testing.T, c testCase, pid string) {
	t.Helper()
	out := hotpatch(t, "unpatch", "-p", pid, "-i", c.name, "--json")
	var doc struct {
		Processes []struct {
			Status  string `json:"status"`
			Patches []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
				Status string `json:"status"`
			} `json:"patches"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Processes) != 1 {
		t.Fatalf("unpatch --json: %v\n%s", err, out)
	}
	removed := map[string]bool{}
	for _, p := range doc.Processes[0].Patches {
		if p.ID == c.name && p.Status == "removed" {
			removed[filepath.Base(p.Object)] = true
		}
	}
	for _, tg := range c.spec.Targets {
		if !removed[filepath.Base(tg)] {
			t.Errorf("unpatch -i %s did not list %s as removed:\n%s", c.name, tg, out)
		}
	}
	if info := hotpatch(t, "info", "-p", pid, "--json"); strings.Contains(info, `"id": "`+c.name+`"`) {
		t.Fatalf("after unpatch -i %s, info still shows it:\n%s", c.name, info)
	}
}

func hotpatch(t *testing.T, args ...string) string {
	t.Helper()
	out, err := hotpatchErr(args...)
	if err != nil {
		t.Fatalf("hotpatch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func hotpatchErr(args ...string) (string, error) {
	cmd := exec.Command(hotpatchBinary, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
}

func readPatches(t *testing.T, dir string) []*patchfile.Patch {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.hpatch"))
	sort.Strings(paths)
	var ps []*patchfile.Patch
	for _, path := range paths {
		p, err := patchfile.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		t.Fatalf("hotpatch build wrote no patch into %s", dir)
	}
	return ps
}

func targets(ps []*patchfile.Patch) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Target)
	}
	return s
}

func funcNames(p *patchfile.Patch) []string {
	var s []string
	for _, f := range p.Funcs {
		s = append(s, f.Name)
	}
	return s
}

func abs(t *testing.T, path string) string {
	t.Helper()
	a, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		copyFile(t, path, dst)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
