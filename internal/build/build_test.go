package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/wrapper"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// hotpatchBinary is the real command: the build runs it as the compiler
// wrapper, through the shims, as users do.
func hotpatchBinary(t testing.TB) string {
	t.Helper()
	testutil.RequireGCC(t)
	testutil.RequireTools(t, "make", "patch")
	return testutil.HotpatchBinary(t)
}

// copyTree copies testdata/NAME into a fresh folder.
func copyTree(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// cleanEnv is the test's environment without compiler settings a
// developer's shell may carry.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CC", "CXX", "CFLAGS", "CXXFLAGS", "MAKEFLAGS", "SOURCE_DATE_EPOCH":
			continue
		}
		if strings.HasPrefix(k, "HOTPATCH_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// treeHash hashes every file of the tree (name, executable bit, content)
// except hotpatch's own patchroot.
func treeHash(t *testing.T, root string, only map[string]bool) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel == "patchroot" {
				return filepath.SkipDir
			}
			return nil
		}
		if only != nil && !only[rel] {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			dest, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+dest)
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		sum := sha256.Sum256(data)
		lines = append(lines, fmt.Sprintf("%s %o %s", rel, info.Mode().Perm()&0o111, hex.EncodeToString(sum[:])))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func fileSet(t *testing.T, root string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			set[rel] = true
		}
		return nil
	})
	return set
}

type result struct {
	status         int
	stdout, stderr string
}

func runHotpatch(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(hotpatchBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.status = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run hotpatch: %v", err)
	}
	return r
}

// reason is the one-line reason hotpatch gave for a failure.
func (r result) reason() string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.HasPrefix(l, "hotpatch: build:") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func diffPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func buildID(t *testing.T, path string) string {
	t.Helper()
	id, err := elfobj.BuildIDOfFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(id)
}

// patchesByTarget reads the patch files a build printed, keyed by the
// base name of the output they patch.
func patchesByTarget(t *testing.T, r result) map[string]*patchfile.Patch {
	t.Helper()
	out := map[string]*patchfile.Patch{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("output line %q: want path, target, build-id, functions", line)
		}
		p, err := patchfile.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f[0]) != p.FileName() || "build-id "+p.BuildIDString() != f[2] {
			t.Errorf("line %q does not match the patch it names (%s)", line, p.FileName())
		}
		out[filepath.Base(f[1])] = p
	}
	return out
}

func funcNames(p *patchfile.Patch) []string {
	var names []string
	for _, f := range p.Funcs {
		if f.Flags&patchfile.FuncRangeOnly == 0 {
			names = append(names, f.Name)
		}
	}
	sort.Strings(names)
	return names
}

func checkPatch(t *testing.T, patches map[string]*patchfile.Patch, target, deployed string, want ...string) {
	t.Helper()
	p, ok := patches[target]
	if !ok {
		t.Errorf("no patch for %s", target)
		return
	}
	if got := p.BuildIDString(); got != buildID(t, deployed) {
		t.Errorf("%s: patch build-id %s, the deployed binary's is %s", target, got, buildID(t, deployed))
	}
	sort.Strings(want)
	if got := funcNames(p); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: function table %v, want %v", target, got, want)
	}
}

// patchedJournal counts what the wrapper did in the last patched stage.
func patchedJournal(t *testing.T, tree string) (compiles []string, links []string) {
	t.Helper()
	recs, err := wrapper.State{Dir: filepath.Join(tree, "patchroot", stateName)}.ReadJournal(wrapper.StagePatched)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		switch r.Kind {
		case wrapper.KindCompile:
			rel, _ := filepath.Rel(tree, r.Source)
			compiles = append(compiles, rel)
		case wrapper.KindLink:
			rel, _ := filepath.Rel(tree, r.Output)
			links = append(links, rel)
		}
	}
	sort.Strings(compiles)
	return compiles, links
}

// A make project with a shared library, a PIE and a non-PIE program:
// the patches match the binaries a plain build made, the function tables
// name what the diff changed, the tree is as before, and a second build
// with another diff reuses the original stage and recompiles only what
// the new diff touches.
func TestBuildMakeProject(t *testing.T) {
	tree := copyTree(t, "makeproj")
	sh(t, tree, "make -s")
	deployed := t.TempDir()
	for _, f := range []string{"app", "app-nopie", "libcalc.so"} {
		sh(t, tree, "cp "+f+" "+deployed+"/")
	}
	before := treeHash(t, tree, nil)

	r := runHotpatch(t, tree, "build", "-j", "2", diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"))
	if r.status != 0 {
		t.Fatalf("hotpatch build: status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	if len(patches) != 3 {
		t.Fatalf("%d patches, want 3 (library, PIE and non-PIE program):\n%s", len(patches), r.stdout)
	}
	checkPatch(t, patches, "libcalc.so", filepath.Join(deployed, "libcalc.so"), "calc_add")
	checkPatch(t, patches, "app", filepath.Join(deployed, "app"), "report")
	checkPatch(t, patches, "app-nopie", filepath.Join(deployed, "app-nopie"), "report")
	for _, p := range patches {
		if p.ID != "fix-CVE-2024-0001" || !reflect.DeepEqual(p.Labels, []string{"CVE-2024-0001"}) || p.Level != 1 {
			t.Errorf("header: id %q labels %v level %d", p.ID, p.Labels, p.Level)
		}
	}
	if !strings.Contains(r.stderr, "compilations done") {
		t.Errorf("no progress shown:\n%s", r.stderr)
	}
	if after := treeHash(t, tree, nil); after != before {
		t.Errorf("the tree is not as it was after the build")
	}

	// Second build, new diff, same tree: the original stage is reused and
	// only util.c is compiled again.
	r = runHotpatch(t, tree, "build", "--id", "checksum-fix", "--level", "3",
		"--target", filepath.Join(deployed, "libcalc.so"), diffPath(t, "makeproj-diffs/checksum.diff"))
	if r.status != 0 {
		t.Fatalf("second build: status %d\n%s", r.status, r.stderr)
	}
	if !strings.Contains(r.stderr, "reusing") {
		t.Errorf("the second build did not reuse the original stage:\n%s", r.stderr)
	}
	compiles, links := patchedJournal(t, tree)
	if !reflect.DeepEqual(compiles, []string{"util.c"}) {
		t.Errorf("patched stage compiled %v, want only util.c", compiles)
	}
	if len(links) == 0 {
		t.Errorf("patched stage linked nothing")
	}
	patches = patchesByTarget(t, r)
	if len(patches) != 1 {
		t.Fatalf("patches %v, want only the library (--target)", r.stdout)
	}
	checkPatch(t, patches, "libcalc.so", filepath.Join(deployed, "libcalc.so"), "calc_checksum")
	if p := patches["libcalc.so"]; p.ID != "checksum-fix" || p.Level != 3 {
		t.Errorf("header id %q level %d", p.ID, p.Level)
	}
	if after := treeHash(t, tree, nil); after != before {
		t.Errorf("the tree is not as it was after the second build")
	}
}

// Each failure is a non-zero exit with a one-line reason, and the tree
// comes back as it was.
func TestBuildFailures(t *testing.T) {
	cases := []struct {
		name    string
		project string
		diff    string
		extra   []string
		env     string
		want    []string
		// sourcesOnly compares only the files that were there before
		// any build: a tree that does not build reproducibly gets new
		// objects from the original stage, by its nature.
		sourcesOnly bool
	}{
		{name: "diff does not apply", project: "makeproj", diff: "makeproj-diffs/does-not-apply.diff",
			want: []string{"does-not-apply.diff does not apply", "Hunk #1 FAILED"}},
		{name: "compile error", project: "makeproj", diff: "makeproj-diffs/syntax-error.diff",
			want: []string{"patched stage failed", "compile error in report.c", "expected"}},
		{name: "changed global variable", project: "makeproj", diff: "makeproj-diffs/change-global.diff",
			want: []string{"patched stage failed", "main.c", "iterations"}},
		{name: "not reproducible", project: "timeproj", diff: "timeproj-answer.diff", extra: []string{"--target", "DEPLOYED/stamped"},
			env: "SOURCE_DATE_EPOCH=1700000000", want: []string{"did not reproduce", "version.c uses __DATE__", "SOURCE_DATE_EPOCH"}, sourcesOnly: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tree := copyTree(t, c.project)
			var only map[string]bool
			if c.sourcesOnly {
				only = fileSet(t, tree)
			}
			// The deployed build: a plain make (at a fixed time for the
			// timestamp case, so that the patch build cannot match it).
			sh(t, tree, c.env+" make -s")
			deployed := t.TempDir()
			sh(t, tree, "cp -r . "+deployed+"/")
			before := treeHash(t, tree, only)
			args := []string{"build"}
			for _, a := range c.extra {
				args = append(args, strings.ReplaceAll(a, "DEPLOYED", deployed))
			}
			args = append(args, diffPath(t, c.diff))
			r := runHotpatch(t, tree, args...)
			if r.status == 0 {
				t.Fatalf("build succeeded; want a failure\n%s", r.stderr)
			}
			reason := r.reason()
			if strings.Count(reason, "\n") != 0 || reason == "" {
				t.Fatalf("want one line of reason, got:\n%s", r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q lacks %q", reason, w)
				}
			}
			if !strings.Contains(reason, "build.log") {
				t.Errorf("reason %q does not point at the log", reason)
			}
			if after := treeHash(t, tree, only); after != before {
				t.Errorf("the tree was not restored")
			}
		})
	}
}

// A C++ CMake project: the build directory is configured through the
// wrapper (CMake's compiler probes included) and the patches match a plain
// build of the same tree.
func TestBuildCMakeCXXProject(t *testing.T) {
	testutil.RequireTools(t, "cmake")
	t.Parallel()
	tree := copyTree(t, "cmakeproj")
	const command = "cmake -S . -B build >/dev/null && cmake --build build"
	sh(t, tree, command)
	deployed := t.TempDir()
	sh(t, tree, "cp build/libshapes.so build/shapes-demo "+deployed+"/")
	// Here the build command configures the build directory itself (at
	// the same path, so that the objects are the same);
	// TestBuildConfiguredCMakeNinjaCcache patches a folder configured
	// before.
	sh(t, tree, "rm -rf build")
	before := treeHash(t, tree, nil)
	r := runHotpatch(t, tree, "build", "--target", filepath.Join(deployed, "libshapes.so"),
		diffPath(t, "cmakeproj-fix.diff"), "--", "sh", "-c", command)
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	if len(patches) != 1 {
		t.Fatalf("patches:\n%s", r.stdout)
	}
	checkPatch(t, patches, "libshapes.so", filepath.Join(deployed, "libshapes.so"),
		"_ZNK6shapes12_GLOBAL__N_16Circle4areaEv", "_ZNK6shapes8Registry8describeB5cxx11Ev")
	if after := treeHash(t, tree, fileSetOf(before)); after != before {
		t.Errorf("sources not restored")
	}
}

func fileSetOf(hash string) map[string]bool {
	set := map[string]bool{}
	for _, l := range strings.Split(hash, "\n") {
		set[strings.Fields(l)[0]] = true
	}
	return set
}

// An autotools project configured inside the build: configure's compiler
// probes run through the wrapper, and the program links a static archive.
func TestBuildAutotoolsProject(t *testing.T) {
	testutil.RequireTools(t, "autoreconf", "automake")
	t.Parallel()
	tree := copyTree(t, "autoproj")
	sh(t, tree, "autoreconf -fi >/dev/null 2>&1")
	const command = "./configure >/dev/null && make"
	sh(t, tree, command)
	deployed := t.TempDir()
	sh(t, tree, "cp greeter "+deployed+"/")
	sh(t, tree, "make distclean >/dev/null")
	sources := fileSet(t, tree)
	before := treeHash(t, tree, sources)
	r := runHotpatch(t, tree, "build", "--target", filepath.Join(deployed, "greeter"),
		diffPath(t, "autoproj-fix.diff"), "--", "sh", "-c", command)
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	checkPatch(t, patchesByTarget(t, r), "greeter", filepath.Join(deployed, "greeter"), "greeting")
	recs, err := wrapper.State{Dir: filepath.Join(tree, "patchroot", stateName)}.ReadJournal(wrapper.StageOriginal)
	if err != nil {
		t.Fatal(err)
	}
	probes := 0
	for _, r := range recs {
		if r.Kind == wrapper.KindPass {
			probes++
		}
	}
	if probes < 5 {
		t.Errorf("only %d compiler invocations passed through; configure's probes should have", probes)
	}
	if after := treeHash(t, tree, sources); after != before {
		t.Errorf("sources not restored")
	}
}

// Ctrl-C in the middle of the patched stage stops the build and still
// puts the sources back.
func TestBuildInterruptedRestoresSources(t *testing.T) {
	t.Parallel()
	tree := copyTree(t, "makeproj")
	sources := fileSet(t, tree)
	sh(t, tree, "make -s")
	before := treeHash(t, tree, sources)
	started := filepath.Join(t.TempDir(), "started")
	command := `make -s && if [ "$HOTPATCH_STAGE" = patched ]; then touch ` + started + `; sleep 60; fi`
	cmd := exec.Command(hotpatchBinary(t), "build", diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"), "--", "sh", "-c", command)
	cmd.Dir = tree
	cmd.Env = cleanEnv()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("build ended before the patched stage was interrupted: %v\n%s", err, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The patched sources are in place while the stage runs.
	if treeHash(t, tree, sources) == before {
		t.Fatal("the diff was not applied during the patched stage")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("interrupted build: %v, want a non-zero exit\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("no word of the interruption:\n%s", errb.String())
	}
	if after := treeHash(t, tree, sources); after != before {
		t.Errorf("sources not restored after the interruption")
	}
}

// A real Debian package built its own way (debian/rules, dpkg-buildflags:
// -g -O2 -ffile-prefix-map -fstack-protector-strong -D_FORTIFY_SOURCE=2):
// lz4 1.9.4, a library and a program. The source is not in the
// repository; point HOTPATCH_LZ4_SRC at an unpacked "apt-get source lz4".
func TestBuildDebianLZ4(t *testing.T) {
	src := os.Getenv("HOTPATCH_LZ4_SRC")
	if src == "" {
		t.Skip("skipped: HOTPATCH_LZ4_SRC is not set (unpack the Debian source with apt-get source lz4 and apt-get build-dep lz4, then point HOTPATCH_LZ4_SRC at it)")
	}
	if _, err := os.Stat(filepath.Join(src, "debian", "rules")); err != nil {
		t.Skipf("skipped: %s is not an unpacked Debian source package: %v", src, err)
	}
	testutil.RequireTools(t, "dh_auto_build", "dpkg-buildflags")
	t.Parallel()
	tree := filepath.Join(t.TempDir(), "lz4")
	sh(t, filepath.Dir(tree), "cp -r "+src+" "+tree+" && cd "+tree+" && make clean >/dev/null 2>&1; true")
	const command = "debian/rules"
	sh(t, tree, "debian/rules override_dh_auto_build >/dev/null 2>&1")
	deployed := t.TempDir()
	sh(t, tree, "cp lib/liblz4.so.1.9.4 programs/lz4 "+deployed+"/")
	before := treeHash(t, tree, nil)
	r := runHotpatch(t, tree, "build", "--target", filepath.Join(deployed, "liblz4.so.1.9.4"), "--target", filepath.Join(deployed, "lz4"),
		diffPath(t, "lz4-fix.diff"), "--", command, "override_dh_auto_build")
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	checkPatch(t, patches, "liblz4.so.1.9.4", filepath.Join(deployed, "liblz4.so.1.9.4"), "LZ4_compressBound")
	// The program has its own copy of the library code, where gcc
	// inlined LZ4_compressBound into its callers, and lz4io.c's line
	// numbers shifted under the added line: more functions change there.
	prog, ok := patches["lz4"]
	if !ok {
		t.Fatalf("no patch for the lz4 program:\n%s", r.stdout)
	}
	if prog.BuildIDString() != buildID(t, filepath.Join(deployed, "lz4")) {
		t.Errorf("lz4 patch build-id %s", prog.BuildIDString())
	}
	names := strings.Join(funcNames(prog), " ")
	for _, want := range []string{"LZ4_compressBound", "LZ4IO_setNotificationLevel"} {
		if !strings.Contains(" "+names+" ", " "+want+" ") {
			t.Errorf("lz4 function table %s lacks %s", names, want)
		}
	}
	if after := treeHash(t, tree, nil); after != before {
		t.Errorf("tree not restored")
	}
}

// BenchmarkBuildMakeProject measures a whole patch build of the small make
// project: cold (original stage, patched stage, restore) and warm (the
// original stage reused). Compare with BenchmarkPlainMake.
func BenchmarkBuildMakeProject(b *testing.B) {
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			tree := copyTreeB(b, "makeproj")
			bin := hotpatchBinary(b)
			diff, _ := filepath.Abs("testdata/makeproj-diffs/fix-CVE-2024-0001.diff")
			run := func() {
				cmd := exec.Command(bin, "build", diff)
				cmd.Dir = tree
				cmd.Env = cleanEnv()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
			}
			if warm {
				run()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !warm {
					b.StopTimer()
					os.RemoveAll(filepath.Join(tree, "patchroot"))
					b.StartTimer()
				}
				run()
			}
		})
	}
}

// BenchmarkPlainMake is the plain build the patch build is compared with.
func BenchmarkPlainMake(b *testing.B) {
	tree := copyTreeB(b, "makeproj")
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("sh", "-c", "make -s clean && make -s")
		cmd.Dir = tree
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
}

func copyTreeB(b *testing.B, name string) string {
	dst := filepath.Join(b.TempDir(), name)
	cmd := exec.Command("cp", "-r", filepath.Join("testdata", name), dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	return dst
}

// Several diffs apply in order and make one patch per object; the id and
// labels come from their names.
func TestBuildSeveralDiffs(t *testing.T) {
	t.Parallel()
	tree := copyTree(t, "makeproj")
	out := t.TempDir()
	r := runHotpatch(t, tree, "build", "-o", out, "--description", "two fixes",
		diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"), diffPath(t, "makeproj-diffs/checksum.diff"))
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	lib, ok := patches["libcalc.so"]
	if !ok {
		t.Fatalf("no library patch:\n%s", r.stdout)
	}
	if got := funcNames(lib); !reflect.DeepEqual(got, []string{"calc_add", "calc_checksum"}) {
		t.Errorf("library functions %v", got)
	}
	if lib.ID != "fix-CVE-2024-0001+checksum" || lib.Description != "two fixes" || !reflect.DeepEqual(lib.Labels, []string{"CVE-2024-0001"}) {
		t.Errorf("header id %q description %q labels %v", lib.ID, lib.Description, lib.Labels)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != len(patches) {
		t.Errorf("%d files in -o %s, %d patches", len(ents), out, len(patches))
	}
}
