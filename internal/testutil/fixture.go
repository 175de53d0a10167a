package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Build describes one fixture program or library compiled from a testdata
// folder with the real compiler.
type Build struct {
	// Dir is the folder holding the sources, usually "testdata/NAME".
	Dir string
	// Sources are file names relative to Dir. Empty means every .c, .cc
	// and .cpp file in Dir.
	Sources []string
	// Name is the output file name; it defaults to the base name of Dir
	// (with "lib" and ".so" around it when Shared is set).
	Name string
	// Flags go to every compilation and the link, such as "-O2", "-g",
	// "-fPIE", "-pthread".
	Flags []string
	// LinkFlags go to the link only, such as "-L", "-lfoo", "-Wl,-rpath".
	LinkFlags []string
	// Shared links a shared library instead of an executable.
	Shared bool
	// CXX forces the C++ driver; it is chosen anyway when a source is C++.
	CXX bool
}

var fixtureCache struct {
	sync.Mutex
	dir   string
	built map[string]string
}

// Main runs the tests of a package and removes the fixtures they built.
// Call it from TestMain: func TestMain(m *testing.M) { testutil.Main(m) }.
func Main(m interface{ Run() int }) {
	code := m.Run()
	fixtureCache.Lock()
	if fixtureCache.dir != "" {
		os.RemoveAll(fixtureCache.dir)
	}
	fixtureCache.Unlock()
	os.Exit(code)
}

// BuildFixture compiles b and returns the path of the output. Results are
// cached for the rest of the test run: the same sources and flags build
// once however many tests ask.
func BuildFixture(t testing.TB, b Build) string {
	t.Helper()
	RequireGCC(t)
	srcs, err := b.sources()
	if err != nil {
		t.Fatalf("fixture %s: %v", b.Dir, err)
	}
	key, err := b.key(srcs)
	if err != nil {
		t.Fatalf("fixture %s: %v", b.Dir, err)
	}
	dir, err := cacheDir()
	if err != nil {
		t.Fatalf("fixture cache: %v", err)
	}
	fixtureCache.Lock()
	defer fixtureCache.Unlock()
	if p, ok := fixtureCache.built[key]; ok {
		return p
	}
	outDir := filepath.Join(dir, key[:16])
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatalf("fixture cache: %v", err)
	}
	out := filepath.Join(outDir, b.outputName())
	args := append([]string{}, b.Flags...)
	if b.Shared {
		args = append(args, "-shared", "-fPIC")
	}
	args = append(args, "-o", out)
	for _, s := range srcs {
		args = append(args, filepath.Join(b.Dir, s))
	}
	args = append(args, b.LinkFlags...)
	cmd := exec.Command(b.driver(srcs), args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fixture %s: %s %s: %v\n%s", b.Dir, cmd.Path, strings.Join(args, " "), err, msg)
	}
	fixtureCache.built[key] = out
	return out
}

func (b Build) sources() ([]string, error) {
	if len(b.Sources) > 0 {
		return b.Sources, nil
	}
	ents, err := os.ReadDir(b.Dir)
	if err != nil {
		return nil, err
	}
	var srcs []string
	for _, e := range ents {
		if isCSource(e.Name()) && !e.IsDir() {
			srcs = append(srcs, e.Name())
		}
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("no C or C++ sources in %s", b.Dir)
	}
	sort.Strings(srcs)
	return srcs, nil
}

func isCSource(name string) bool {
	switch filepath.Ext(name) {
	case ".c", ".cc", ".cpp", ".cxx":
		return true
	}
	return false
}

func (b Build) driver(srcs []string) string {
	if b.CXX {
		return "g++"
	}
	for _, s := range srcs {
		if filepath.Ext(s) != ".c" {
			return "g++"
		}
	}
	return "gcc"
}

func (b Build) outputName() string {
	if b.Name != "" {
		return b.Name
	}
	base := filepath.Base(b.Dir)
	if b.Shared {
		return "lib" + base + ".so"
	}
	return base
}

// key identifies a build by everything that affects its output.
func (b Build) key(srcs []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %v %v %s\n", b.Flags, b.LinkFlags, b.outputName(), b.Shared, b.CXX, b.driver(srcs))
	abs, _ := filepath.Abs(b.Dir)
	fmt.Fprintf(h, "%s\n", abs)
	for _, s := range srcs {
		f, err := os.Open(filepath.Join(b.Dir, s))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n", s)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
