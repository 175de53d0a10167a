package build

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// shipLikeDebian does to a built binary what a distribution's packaging
// does: the debug information goes to a separate file, the binary is
// stripped and gets a debuglink, and its build-id is not the one the
// rebuild computes (Debian's covers the debug information).
func shipLikeDebian(t *testing.T, built, dir, name string) string {
	t.Helper()
	testutil.RequireTools(t, "objcopy", "strip")
	out := filepath.Join(dir, name)
	debug := out + ".debug"
	sh(t, dir, "objcopy --only-keep-debug "+built+" "+debug+
		" && strip --remove-section=.comment --remove-section=.note --strip-unneeded -o "+out+" "+built+
		" && objcopy --add-gnu-debuglink="+debug+" "+out)
	rewriteBuildID(t, out)
	return out
}

// rewriteBuildID replaces the descriptor of the build-id note in place.
func rewriteBuildID(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".note.gnu.build-id")
	if s == nil {
		f.Close()
		t.Fatalf("%s has no .note.gnu.build-id", path)
	}
	off, size := s.Offset, s.Size
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// namesz, descsz, type, "GNU\0", then the descriptor.
	for i := off + 16; i < off+size; i++ {
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A redis-like project that builds deps/ once, deployed the way Debian
// ships binaries (stripped, debuglink, another build-id) behind a symlink
// with another name. The fix is in deps/, which the patched stage's make
// does not rebuild: hotpatch compiles it and relinks in make's place, keys
// the patch to the deployed build-id, puts the tree back so that make has
// nothing to do, and the patch applies to the deployed binary running.
func TestBuildShippedBinaryAndDepsBuiltOnce(t *testing.T) {
	t.Parallel()
	tree := copyTree(t, "depsproj")
	sh(t, tree, "make -s")
	deployed := t.TempDir()
	real := shipLikeDebian(t, filepath.Join(tree, "server"), deployed, "depsd-1.0")
	link := filepath.Join(deployed, "depsd")
	if err := os.Symlink("depsd-1.0", link); err != nil {
		t.Fatal(err)
	}
	if buildID(t, real) == buildID(t, filepath.Join(tree, "server")) {
		t.Fatal("the deployed copy kept the build-id")
	}
	sh(t, tree, "make -s clean")
	sources := fileSet(t, tree)
	before := treeHash(t, tree, sources)

	r := runHotpatch(t, tree, "build", "--target", link, diffPath(t, "depsproj-fix.diff"))
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	for _, want := range []string{"did not compile deps/clamp.c again; hotpatch compiled it", "linked server again", "keyed to " + buildID(t, real)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	patches := patchesByTarget(t, r)
	if len(patches) != 1 {
		t.Fatalf("patches:\n%s", r.stdout)
	}
	checkPatch(t, patches, "server", real, "clamp_value")

	if after := treeHash(t, tree, sources); after != before {
		t.Errorf("sources not restored")
	}
	// The tree is the original build again, and make agrees.
	if diffs, err := elfobj.CompareLoaded(filepath.Join(tree, "server"), real); err != nil || len(diffs) != 0 {
		t.Errorf("server in the tree after the build: %v %s", err, elfobj.DescribeDifferences(diffs, 3))
	}
	cmd := exec.Command("make", "-q")
	cmd.Dir = tree
	cmd.Env = cleanEnv()
	if err := cmd.Run(); err != nil {
		t.Errorf("make -q after the build: %v (the tree is not up to date)", err)
	}

	// The patch applies to the shipped binary, started through the
	// symlink, and comes off again.
	testutil.RequirePtrace(t)
	var patchPath string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		patchPath = strings.Split(line, "\t")[0]
	}
	p := testutil.Start(t, link)
	at := p.WaitFor(t, 0, "value 20\n", 10*time.Second)
	pid := strconv.Itoa(p.Pid)
	if out := runHotpatch(t, tree, "patch", "-p", pid, patchPath); out.status != 0 {
		t.Fatalf("patch: %s", out.stderr)
	}
	at = p.WaitFor(t, at, "value 7\nvalue 7\n", 10*time.Second)
	if out := runHotpatch(t, tree, "unpatch", "-p", pid); out.status != 0 {
		t.Fatalf("unpatch: %s", out.stderr)
	}
	counting := regexp.MustCompile(`value (\d\d+)\n`)
	deadline := time.Now().Add(10 * time.Second)
	for !counting.MatchString(p.Output()[at:]) {
		if time.Now().After(deadline) {
			t.Fatalf("the values did not count on after unpatch:\n%s", p.Output()[at:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
