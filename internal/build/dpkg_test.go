package build

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/wrapper"
)

func TestDpkgIncremental(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"make -j2", ""},
		{"dpkg-buildpackage -b -uc -us", "dpkg-buildpackage -uc -us --rules-target=build"},
		{"/usr/bin/dpkg-buildpackage --build=binary -j4 -nc -T binary -d", "/usr/bin/dpkg-buildpackage -j4 -d --rules-target=build"},
		{"dpkg-buildpackage -Tbinary --rules-target=clean -aarm64", "dpkg-buildpackage -aarm64 --rules-target=build"},
	} {
		got := strings.Join(dpkgIncremental(strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}

// A Debian package built with dpkg-buildpackage, its own way (dh,
// hardening flags, SOURCE_DATE_EPOCH from the changelog, dh_strip): the
// targets are the stripped files of the .deb it made. The original stage
// runs the whole command, clean step included; the patched stage and the
// restore rebuild only what the diff touches.
func TestBuildDpkgBuildpackage(t *testing.T) {
	testutil.RequireTools(t, "dpkg-buildpackage", "dh", "dpkg-deb")
	t.Parallel()
	tree := copyTree(t, "debproj")
	for _, f := range []string{"calc.c", "calc.h", "main.c", "report.c", "report.h", "util.c", "util.h"} {
		data, err := os.ReadFile(filepath.Join("testdata", "makeproj", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const command = "dpkg-buildpackage -b -uc -us"
	sh(t, tree, command+" >/dev/null 2>&1")
	deployed := t.TempDir()
	sh(t, tree, "dpkg-deb -x ../calc_1.0-1_amd64.deb "+deployed)
	app := filepath.Join(deployed, "usr", "bin", "calc-app")
	lib := filepath.Join(deployed, "usr", "lib", "calc", "libcalc.so")
	sources := fileSet(t, tree)
	before := treeHash(t, tree, sources)

	r := runHotpatch(t, tree, append([]string{"build", "--target", app, "--target", lib,
		diffPath(t, "makeproj-diffs/fix-CVE-2024-0001.diff"), "--"}, strings.Fields(command)...)...)
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	checkPatch(t, patches, "libcalc.so", lib, "calc_add")
	checkPatch(t, patches, "app", app, "report")

	compiles, _ := patchedJournal(t, tree)
	if !reflect.DeepEqual(compiles, []string{"calc.c", "report.c"}) {
		t.Errorf("the patched stage compiled %v, want only what the diff touches", compiles)
	}
	recs, err := wrapper.State{Dir: filepath.Join(tree, "patchroot", stateName)}.ReadJournal(wrapper.StageOriginal)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range recs {
		if r.Kind == wrapper.KindCompile {
			count[filepath.Base(r.Source)]++
		}
	}
	// Once in the original stage, and again in the restore only for
	// what the diff changed.
	if want := map[string]int{"calc.c": 2, "report.c": 2, "main.c": 1, "util.c": 1}; !reflect.DeepEqual(count, want) {
		t.Errorf("original stage and restore compiled %v, want %v", count, want)
	}
	if after := treeHash(t, tree, sources); after != before {
		t.Errorf("the tree (debian/ included) is not as it was")
	}
}
