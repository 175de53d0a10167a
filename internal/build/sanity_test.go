package build

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// .data ends 4 bytes short of an 8-byte boundary and .bss is 4-aligned:
// the layout in which an unpinned .tm_clone_table moves .bss.
const layoutProg = `#include <stdio.h>
static int counter;
int initialised = 3;
int bump(void) { return ++counter + initialised; }
int main(void) { printf("%d\n", bump()); return 0; }
`

// A patch section appended the way the differ appends it: not allocated.
const layoutPatch = `
# hotpatch: patch sections follow
	.section .hotpatch.text,"x",@progbits
bump.hotpatch:
	movl	counter(%rip), %eax
	ret
	.section .hotpatch.data,"w",@progbits
	.quad	0
`

func layoutLinks(t *testing.T, flags []string, pinTMClone bool) (orig, patched string) {
	t.Helper()
	testutil.RequireGCC(t)
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("p.c", layoutProg)
	sh(t, dir, "gcc -O2 "+strings.Join(flags, " ")+" -S p.c -o p.s && cat p.s > aug.s && cat >> aug.s <<'EOF'\n"+layoutPatch+"EOF\n")
	sh(t, dir, "gcc "+strings.Join(flags, " ")+" p.s -o orig")
	link := "gcc " + strings.Join(flags, " ") + " aug.s -o patched -Wl,-q"
	if pinTMClone {
		write("tm.ld", "SECTIONS { .tm_clone_table : { *(.tm_clone_table) } } INSERT BEFORE .data;\n")
		link += " -Wl,-T,tm.ld"
	}
	sh(t, dir, link)
	return filepath.Join(dir, "orig"), filepath.Join(dir, "patched")
}

func TestCheckLayoutAcceptsNonAllocatedPatchSections(t *testing.T) {
	for _, flags := range [][]string{{"-fPIE", "-pie"}, {"-fno-pie", "-no-pie"}, {"-fPIC", "-shared"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			t.Parallel()
			orig, patched := layoutLinks(t, flags, true)
			if err := CheckLayout(orig, patched); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without the .tm_clone_table pin, -q keeps an empty table that moves
// .bss: the check must catch it and name what moved.
func TestCheckLayoutNamesMovedSymbols(t *testing.T) {
	t.Parallel()
	orig, patched := layoutLinks(t, []string{"-fPIE", "-pie"}, false)
	err := CheckLayout(orig, patched)
	var le *LayoutError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *LayoutError", err)
	}
	var names []string
	for _, m := range le.Moved {
		names = append(names, m.Name)
	}
	for _, want := range []string{"counter"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("moved symbols %v lack %s", names, want)
		}
	}
	msg := err.Error()
	if !strings.Contains(msg, patched) || !strings.Contains(msg, "->") || strings.Contains(msg, "\n") {
		t.Errorf("message %q should name the output and the first moves on one line", msg)
	}
}

func TestDiffFiles(t *testing.T) {
	diff := `diff --git a/src/old.c b/src/new.c
similarity index 90%
rename from src/old.c
rename to src/new.c
--- a/src/old.c
+++ b/src/new.c
@@ -1 +1 @@
-x
+y
--- a/lib/util.c	2024-01-01 00:00:00.000000000 +0000
+++ b/lib/util.c	2024-01-02 00:00:00.000000000 +0000
@@ -1 +1 @@
-a
+b
--- /dev/null
+++ b/added.h
@@ -0,0 +1 @@
+int added;
--- a/../escape.c
+++ b/../escape.c
`
	got := diffFiles([]byte(diff))
	want := []string{"src/old.c", "src/new.c", "lib/util.c", "added.h"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("diffFiles = %q, want %q", got, want)
	}
}

func TestBackupRestore(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "kept.c"), []byte("original\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := newBackup(root, filepath.Join(t.TempDir(), "backup"), []string{"kept.c", "sub/new.c"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "kept.c"), []byte("patched\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "sub/new.c"), []byte("new\n"), 0o644)

	// A later run finds the manifest an interrupted one left.
	again, err := loadBackup(root, b.dir)
	if err != nil || again == nil {
		t.Fatalf("manifest not found: %v", err)
	}
	if err := again.restore(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(root, "kept.c"))
	st, _ := os.Stat(filepath.Join(root, "kept.c"))
	if string(data) != "original\n" || st.Mode().Perm() != 0o755 {
		t.Errorf("kept.c = %q mode %v", data, st.Mode())
	}
	if _, err := os.Stat(filepath.Join(root, "sub/new.c")); !os.IsNotExist(err) {
		t.Errorf("file created by the diff still there: %v", err)
	}
	if left, _ := loadBackup(root, b.dir); left != nil {
		t.Error("manifest left after a restore")
	}
}

func FuzzDiffFiles(f *testing.F) {
	for _, name := range []string{"makeproj-diffs/fix-CVE-2024-0001.diff", "cmakeproj-fix.diff", "autoproj-fix.diff", "timeproj-answer.diff"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range diffFiles(data) {
			if filepath.IsAbs(p) || strings.HasPrefix(p, "..") {
				t.Fatalf("diffFiles returned %q, which escapes the tree", p)
			}
		}
	})
}
