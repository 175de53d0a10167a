package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var hotpatchBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// HotpatchBinary builds the hotpatch command once per test run and returns
// its path, for tests that run it as users do: as a separate process, as
// the compiler wrapper behind the shims, as the tracer of a target. The
// binary lives with the fixtures; testutil.Main removes it.
func HotpatchBinary(t testing.TB) string {
	t.Helper()
	hotpatchBin.once.Do(func() {
		dir, err := cacheDir()
		if err != nil {
			hotpatchBin.err = err
			return
		}
		hotpatchBin.path = filepath.Join(dir, "hotpatch")
		goTool := goCommand()
		cmd := exec.Command(goTool, "build", "-o", hotpatchBin.path, "github.com/hotpatch/hotpatch/cmd/hotpatch")
		hotpatchBin.out, hotpatchBin.err = cmd.CombinedOutput()
	})
	if hotpatchBin.err != nil {
		t.Fatalf("build hotpatch: %v\n%s", hotpatchBin.err, hotpatchBin.out)
	}
	return hotpatchBin.path
}

// cacheDir is the folder that holds what this test run builds once.
func cacheDir() (string, error) {
	fixtureCache.Lock()
	defer fixtureCache.Unlock()
	if fixtureCache.dir == "" {
		d, err := os.MkdirTemp("", "hotpatch-fixtures-")
		if err != nil {
			return "", err
		}
		fixtureCache.dir = d
		fixtureCache.built = map[string]string{}
	}
	return fixtureCache.dir, nil
}

// goCommand is the go tool that runs this test: "go" on PATH, or the one
// in the GOROOT the toolchain reports, so a test binary built by
// /usr/local/go/bin/go finds it without PATH.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if out, err := exec.Command("/usr/local/go/bin/go", "env", "GOROOT").Output(); err == nil {
		return filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
	}
	return "go"
}
