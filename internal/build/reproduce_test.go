package build

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// reproSource names its own path (__FILE__, as assert and log macros
// do), so that the build directory reaches the loaded bytes.
const reproSource = "const char *where(void) { return __FILE__; }\nint answer(void) { return 42; }\nint main(void) { return answer() - 42 + !where(); }\n"

// builtIn compiles the same source in dir (which ends up in the debug
// information as the build directory) with flags.
func builtIn(t *testing.T, dir string, flags string) originalOutput {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prog.c"), []byte(reproSource), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, dir, "gcc "+flags+" \"$PWD/prog.c\" -o prog")
	p := filepath.Join(dir, "prog")
	id, err := elfobj.BuildIDOfFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return originalOutput{Path: p, Kept: p, BuildID: id, Sources: []string{filepath.Join(dir, "prog.c")}}
}

func TestCheckTargetDiagnosis(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	root := t.TempDir()
	deployed := builtIn(t, filepath.Join(root, "build-server", "prog"), "-O2 -g")
	// Keep the deployed binary apart: later builds in its folder
	// overwrite the file there.
	sh(t, root, "mkdir deployed && cp "+deployed.Path+" deployed/prog")
	deployed.Path = filepath.Join(root, "deployed", "prog")

	// Same place, same flags: reproduced.
	same := builtIn(t, filepath.Join(root, "again"), "-O2 -g")
	if got, err := checkTarget(deployed.Path, []originalOutput{builtIn(t, filepath.Join(root, "build-server", "prog"), "-O2 -g")}, nil); err != nil || got == nil {
		t.Fatalf("same build not accepted: %v", err)
	}

	var nr *NotReproducibleError
	_, err := checkTarget(deployed.Path, []originalOutput{same}, nil)
	if !errors.As(err, &nr) {
		t.Fatalf("err = %v, want *NotReproducibleError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "what the loader maps differs: .rodata: size 0x") || !strings.Contains(msg, "build paths") || !strings.Contains(msg, "-ffile-prefix-map") || !strings.Contains(msg, filepath.Join(root, "build-server", "prog")) || !strings.Contains(msg, "this build ran in "+filepath.Join(root, "again")) {
		t.Errorf("diagnosis %q does not name the build directories and the fix", msg)
	}

	other := builtIn(t, filepath.Join(root, "build-server", "prog"), "-O1 -g")
	_, err = checkTarget(deployed.Path, []originalOutput{other}, nil)
	if err == nil || !strings.Contains(err.Error(), "different compiler or flags") || !strings.Contains(err.Error(), "-O1") {
		t.Errorf("diagnosis %v does not name the flags", err)
	}

	renamed := builtIn(t, filepath.Join(root, "elsewhere"), "-O1")
	renamed.Path = filepath.Join(root, "elsewhere", "tool")
	_, err = checkTarget(deployed.Path, []originalOutput{renamed}, nil)
	if err == nil || !strings.Contains(err.Error(), "no output of the build has its loaded contents, its name or its soname") {
		t.Errorf("diagnosis %v for a target the build does not make", err)
	}
}

// A rebuild that differs from the deployed binary only in what is not
// loaded (debug information, the build-id) is accepted by its contents,
// whatever its name; the patch is keyed to the deployed build-id.
func TestCheckTargetByContents(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	root := t.TempDir()
	built := builtIn(t, filepath.Join(root, "build"), "-O2 -g -Wl,--build-id=0x0123456789abcdef0123456789abcdef01234567")
	sh(t, root, "mkdir deployed && gcc -O2 -g0 -Wl,--build-id=0xfedcba9876543210fedcba9876543210fedcba98 \"$PWD/build/prog.c\" -o deployed/prog-real && strip deployed/prog-real && ln -s prog-real deployed/prog-link")
	other := builtIn(t, filepath.Join(root, "other"), "-O1")
	got, err := checkTarget(filepath.Join(root, "deployed", "prog-link"), []originalOutput{other, built}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != built.Path || hex.EncodeToString(got.DeployedID) != "fedcba9876543210fedcba9876543210fedcba98" || hex.EncodeToString(got.BuildID) != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("matched %s (build-id %x) for the deployed id %x", got.Path, got.BuildID, got.DeployedID)
	}
}
