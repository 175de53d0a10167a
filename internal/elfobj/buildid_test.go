package elfobj

import (
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestBuildIDMatchesReadelf(t *testing.T) {
	testutil.RequireGCC(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "x.c")
	bin := filepath.Join(dir, "x")
	if err := writeFile(src, "int main(void) { return 0; }\n"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-Wl,--build-id", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command("readelf", "-n", bin).Output()
	if err != nil {
		t.Fatalf("readelf: %v", err)
	}
	var want string
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "Build ID:"); i >= 0 {
			want = strings.TrimSpace(line[i+len("Build ID:"):])
		}
	}
	if want == "" {
		t.Fatalf("readelf shows no build-id:\n%s", out)
	}
	id, err := BuildIDOfFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(id); got != want {
		t.Fatalf("build-id %s, readelf says %s", got, want)
	}

	if out, err := exec.Command("gcc", "-Wl,--build-id=none", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	if _, err := BuildIDOfFile(bin); err == nil || !strings.Contains(err.Error(), "no GNU build-id") {
		t.Fatalf("object without build-id: got %v", err)
	}
}

func TestFindBuildIDNoteNeverPanics(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, make([]byte, 12), {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 3, 0, 0, 0}} {
		findBuildIDNote(b, nativeOrder)
	}
}
