package build

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/wrapper"
)

// buildFolderHash hashes every file of a configured build folder but the
// two that record which builds ninja ran (they change with any build).
func buildFolderHash(t *testing.T, dir string) string {
	t.Helper()
	only := fileSet(t, dir)
	delete(only, ".ninja_log")
	delete(only, ".ninja_deps")
	return treeHash(t, dir, only)
}

// upToDate fails unless ninja has nothing to do in dir.
func upToDate(t *testing.T, dir string) {
	t.Helper()
	out := sh(t, dir, "ninja -n")
	if !strings.Contains(out, "no work to do") {
		t.Errorf("ninja -n in %s after the patch build:\n%s", dir, out)
	}
}

// compiledThroughWrapper fails unless the original stage kept the
// assembly of the named sources.
func compiledThroughWrapper(t *testing.T, tree string, sources ...string) {
	t.Helper()
	recs, err := wrapper.State{Dir: filepath.Join(tree, "patchroot", stateName)}.ReadJournal(wrapper.StageOriginal)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Kind == wrapper.KindCompile {
			seen[filepath.Base(r.Source)] = true
		}
	}
	for _, s := range sources {
		if !seen[s] {
			t.Errorf("%s was not compiled through the wrapper in the original stage", s)
		}
	}
}

// The usual CMake set-up: the user configured build/ with Ninja and ccache
// as the compiler launcher, and the cache holds /usr/bin/c++. The patch
// build runs "cmake --build build" as it is: the compiler's own file is
// covered by the wrapper for the build's processes, ccache is turned off
// and says so, and every file of the build folder is as it was.
func TestBuildConfiguredCMakeNinjaCcache(t *testing.T) {
	testutil.RequireTools(t, "cmake", "ninja", "ccache", "unshare")
	t.Parallel()
	tree := copyTree(t, "cmakeproj")
	sh(t, tree, "cmake -G Ninja -S . -B build -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null && cmake --build build >/dev/null")
	deployed := t.TempDir()
	sh(t, tree, "cp build/libshapes.so "+deployed+"/")
	build := filepath.Join(tree, "build")
	cache, err := os.ReadFile(filepath.Join(build, "CMakeCache.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cache, []byte("CMAKE_CXX_COMPILER:FILEPATH=/")) || !bytes.Contains(cache, []byte("CMAKE_CXX_COMPILER_LAUNCHER:UNINITIALIZED=ccache")) {
		t.Fatalf("the cache does not hold an absolute compiler and the ccache launcher:\n%s", cache)
	}
	before := buildFolderHash(t, build)
	srcFiles := fileSet(t, tree)
	for f := range srcFiles {
		if strings.HasPrefix(f, "build/") {
			delete(srcFiles, f)
		}
	}
	sources := treeHash(t, tree, srcFiles)

	r := runHotpatch(t, tree, "build", "--target", filepath.Join(deployed, "libshapes.so"),
		diffPath(t, "cmakeproj-fix.diff"), "--", "cmake", "--build", "build")
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	checkPatch(t, patchesByTarget(t, r), "libshapes.so", filepath.Join(deployed, "libshapes.so"),
		"_ZNK6shapes12_GLOBAL__N_16Circle4areaEv", "_ZNK6shapes8Registry8describeB5cxx11Ev")
	compiledThroughWrapper(t, tree, "shapes.cc", "registry.cc", "demo.cc")
	if !strings.Contains(r.stderr, "ccache is turned off for this build") {
		t.Errorf("no word that ccache was turned off:\n%s", r.stderr)
	}
	if after := buildFolderHash(t, build); after != before {
		t.Errorf("files of the configured build folder changed")
	}
	if after := treeHash(t, tree, srcFiles); after != sources {
		t.Errorf("sources not restored")
	}
	upToDate(t, build)
}

// Meson picks ccache by itself when it is installed ("ccache cc" in
// build.ninja); a configured Meson folder is patched as it is and left as
// it was.
func TestBuildConfiguredMeson(t *testing.T) {
	testutil.RequireTools(t, "meson", "ninja", "unshare")
	t.Parallel()
	tree := copyTree(t, "mesonproj")
	sh(t, tree, "meson setup build >/dev/null && ninja -C build >/dev/null")
	deployed := t.TempDir()
	sh(t, tree, "cp build/libcalc.so build/app "+deployed+"/")
	build := filepath.Join(tree, "build")
	before := buildFolderHash(t, build)

	r := runHotpatch(t, tree, "build", "--target", filepath.Join(deployed, "libcalc.so"), "--target", filepath.Join(deployed, "app"),
		diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"), "--", "ninja", "-C", "build")
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	checkPatch(t, patches, "libcalc.so", filepath.Join(deployed, "libcalc.so"), "calc_add")
	checkPatch(t, patches, "app", filepath.Join(deployed, "app"), "report")
	if after := buildFolderHash(t, build); after != before {
		t.Errorf("files of the configured build folder changed")
	}
	upToDate(t, build)
}

// A Makefile run with the compiler's full path and /usr/lib/ccache first
// on PATH, the Debian way of turning ccache on for everything.
func TestBuildAbsoluteCompilerAndCcacheOnPath(t *testing.T) {
	testutil.RequireTools(t, "ccache", "unshare")
	const masquerade = "/usr/lib/ccache"
	if _, err := os.Stat(filepath.Join(masquerade, "gcc")); err != nil {
		t.Skipf("skipped: ccache's compiler links are not in %s: %v", masquerade, err)
	}
	t.Parallel()
	tree := copyTree(t, "makeproj")
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal(err)
	}
	sh(t, tree, "make -s CC="+gcc)
	deployed := t.TempDir()
	sh(t, tree, "cp libcalc.so "+deployed+"/")
	sh(t, tree, "make -s clean")

	cmd := exec.Command(hotpatchBinary(t), "build", "--target", filepath.Join(deployed, "libcalc.so"),
		diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"), "--", "make", "CC="+gcc)
	cmd.Dir = tree
	for _, kv := range cleanEnv() {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + masquerade + string(os.PathListSeparator) + v
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	r := result{stdout: strings.Join(patchLines(string(out)), "\n")}
	checkPatch(t, patchesByTarget(t, r), "libcalc.so", filepath.Join(deployed, "libcalc.so"), "calc_add")
	compiledThroughWrapper(t, tree, "calc.c", "util.c", "main.c", "report.c")
	if !strings.Contains(string(out), "ccache is turned off") {
		t.Errorf("no word that ccache was turned off:\n%s", out)
	}
}

// patchLines keeps the lines of combined output that name a patch file.
func patchLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Count(l, "\t") == 3 && strings.HasSuffix(strings.Fields(l)[0], ".hpatch") {
			lines = append(lines, l)
		}
	}
	return lines
}
