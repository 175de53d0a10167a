package elfobj

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// compareSource is linked several ways; the value of limit is what the
// "different contents" case changes.
const compareSource = `#include <stdio.h>
static const char banner[] = "compare fixture";
int limit = LIMIT;
int main(int argc, char **argv) { (void)argv; printf("%s %d\n", banner, argc < limit); return 0; }
`

func gccLink(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	src := filepath.Join(dir, "cmp.c")
	if err := os.WriteFile(src, []byte(compareSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	full := append([]string{"-g", "-O2", "-o", out, src}, args...)
	if msg, err := exec.Command("gcc", full...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(full, " "), err, msg)
	}
	return out
}

func runIn(t *testing.T, name string, args ...string) {
	t.Helper()
	testutil.RequireTools(t, name)
	if msg, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, msg)
	}
}

// What Debian does to a binary (strip the debug information into a
// separate file, add a debuglink) and a build-id computed over other
// bytes leave the loaded contents as they were; a changed constant does
// not, and the difference names the section and offset.
func TestCompareLoaded(t *testing.T) {
	testutil.RequireGCC(t)
	dir := t.TempDir()
	built := gccLink(t, dir, "built", "-DLIMIT=3", "-Wl,--build-id=0x1111111111111111111111111111111111111111")

	stripped := filepath.Join(dir, "stripped")
	debug := filepath.Join(dir, "stripped.debug")
	runIn(t, "objcopy", "--only-keep-debug", built, debug)
	runIn(t, "strip", "--strip-unneeded", "--remove-section=.comment", "-o", stripped, built)
	runIn(t, "objcopy", "--add-gnu-debuglink="+debug, stripped)

	otherID := gccLink(t, dir, "other-id", "-DLIMIT=3", "-Wl,--build-id=0x2222222222222222222222222222222222222222")
	otherValue := gccLink(t, dir, "other-value", "-DLIMIT=4", "-Wl,--build-id=0x1111111111111111111111111111111111111111")
	noBuildID := gccLink(t, dir, "no-build-id", "-DLIMIT=3", "-Wl,--build-id=none")

	for _, c := range []struct {
		name, other string
		want        []string // empty: identical
	}{
		{"stripped with debuglink", stripped, nil},
		{"other build-id", otherID, nil},
		{"other initial value", otherValue, []string{".data: 1 byte differs at offset 0x", "(address 0x"}},
		{"no build-id note", noBuildID, []string{"program header"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			diffs, err := CompareLoaded(built, c.other)
			if err != nil {
				t.Fatal(err)
			}
			got := DescribeDifferences(diffs, 5)
			if len(c.want) == 0 {
				if len(diffs) != 0 {
					t.Fatalf("differences: %s", got)
				}
				return
			}
			if len(diffs) == 0 {
				t.Fatal("no difference found")
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("differences %q lack %q", got, w)
				}
			}
		})
	}

	// Swapped, the one difference is still the one byte of limit.
	diffs, err := CompareLoaded(otherValue, built)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || diffs[0].Where != ".data" {
		t.Errorf("differences %s, want one in .data", DescribeDifferences(diffs, 5))
	}
}

func TestCompareLoadedRefusesNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(p, []byte("not an object"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CompareLoaded(p, p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v does not name %s", err, p)
	}
}
