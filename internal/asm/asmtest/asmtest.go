// Package asmtest compiles C and C++ sources to assembly with the real
// compiler for the tests of the assembly parser and the differ. Outputs are
// cached for the life of the test binary, so that a source compiled by
// several tests at the same flags is compiled once.
package asmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// FlagSet is one way of compiling a test source.
type FlagSet struct {
	// Name names the set in test names and expectation files.
	Name  string
	Flags []string
	// PIC tells code that may only be linked into a position-independent
	// output (PIE or shared library).
	PIC bool
	// Shared tells code fit for a shared library.
	Shared bool
}

// FlagSets are the compilations every differ case runs at: -O0, -O2 and
// -O2 -g, each as PIE and as non-PIE code, and -O2 -fPIC. The PIE sets say
// -fPIE explicitly so that the tests mean the same on compilers with other
// defaults.
var FlagSets = []FlagSet{
	{Name: "O0", Flags: []string{"-O0", "-fPIE"}, PIC: true},
	{Name: "O0-nopie", Flags: []string{"-O0", "-fno-pie"}},
	{Name: "O2", Flags: []string{"-O2", "-fPIE"}, PIC: true},
	{Name: "O2-nopie", Flags: []string{"-O2", "-fno-pie"}},
	{Name: "O2g", Flags: []string{"-O2", "-g", "-fPIE"}, PIC: true},
	{Name: "O2g-nopie", Flags: []string{"-O2", "-g", "-fno-pie"}},
	{Name: "O2-fPIC", Flags: []string{"-O2", "-fPIC"}, PIC: true, Shared: true},
}

// DebugFlagSets add the debug-info variants of -O0 and of shared-library
// code, for the cases whose point is what debug information and numbering
// change (line churn, unnamed objects): a case asks for them in its
// expect.json.
var DebugFlagSets = []FlagSet{
	{Name: "O0g", Flags: []string{"-O0", "-g", "-fPIE"}, PIC: true},
	{Name: "O2g-fPIC", Flags: []string{"-O2", "-g", "-fPIC"}, PIC: true, Shared: true},
}

// LinkFlags are the link flags that match the code of fs.
func (fs FlagSet) LinkFlags() []string {
	switch {
	case fs.Shared:
		return []string{"-shared"}
	case fs.PIC:
		return []string{"-pie"}
	}
	return []string{"-no-pie"}
}

var cache struct {
	sync.Mutex
	dir     string
	entries map[string]*entry
}

type entry struct {
	once sync.Once
	out  []byte
	err  error
}

// Dir returns a folder for compiler outputs that lives as long as the test
// binary; Cleanup removes it.
func Dir(t testing.TB) string {
	t.Helper()
	cache.Lock()
	defer cache.Unlock()
	if cache.dir == "" {
		d, err := os.MkdirTemp("", "hotpatch-asmtest-")
		if err != nil {
			t.Fatalf("asmtest cache: %v", err)
		}
		cache.dir = d
		cache.entries = map[string]*entry{}
	}
	return cache.dir
}

// Cleanup removes every cached output. Call it from TestMain after the
// tests ran.
func Cleanup() {
	cache.Lock()
	defer cache.Unlock()
	if cache.dir != "" {
		os.RemoveAll(cache.dir)
		cache.dir = ""
	}
}

// Compile compiles src, the text of a C (or, with cxx, C++) file, to
// assembly with flags, and returns the assembly. The source is always
// compiled as "unit.c" or "unit.cc" from a folder of its own, so that
// __FILE__ and the debug file names do not depend on where the text came
// from: an original and a patched version differ only where their text
// does.
func Compile(t testing.TB, src []byte, cxx bool, flags []string) []byte {
	t.Helper()
	testutil.RequireGCC(t)
	out, err := compile(t, src, cxx, flags)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compile(t testing.TB, src []byte, cxx bool, flags []string) ([]byte, error) {
	root := Dir(t)
	h := sha256.New()
	fmt.Fprintf(h, "%v %q\n", cxx, flags)
	h.Write(src)
	key := hex.EncodeToString(h.Sum(nil))[:20]
	cache.Lock()
	e := cache.entries[key]
	if e == nil {
		e = &entry{}
		cache.entries[key] = e
	}
	cache.Unlock()
	e.once.Do(func() {
		dir := filepath.Join(root, key)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.err = err
			return
		}
		name, driver := "unit.c", "gcc"
		if cxx {
			name, driver = "unit.cc", "g++"
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			e.err = err
			return
		}
		args := append(append([]string{}, flags...), "-S", "-o", "unit.s", name)
		cmd := exec.Command(driver, args...)
		cmd.Dir = dir
		if msg, err := cmd.CombinedOutput(); err != nil {
			e.err = fmt.Errorf("%s %s: %v\n%s", driver, strings.Join(args, " "), err, msg)
			return
		}
		e.out, e.err = os.ReadFile(filepath.Join(dir, "unit.s"))
	})
	return e.out, e.err
}

// CompileFile is Compile for a source file on disk; the language follows
// the extension.
func CompileFile(t testing.TB, path string, flags []string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Compile(t, src, IsCXX(path), flags)
}

// IsCXX reports whether path names a C++ source.
func IsCXX(path string) bool {
	switch filepath.Ext(path) {
	case ".cc", ".cpp", ".cxx", ".C":
		return true
	}
	return false
}

// Assemble assembles the assembly text s with as and returns the path of
// the object, in a fresh folder under the test's temporary folder.
func Assemble(t testing.TB, s []byte) string {
	t.Helper()
	testutil.RequireGCC(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.s")
	out := filepath.Join(dir, "in.o")
	if err := os.WriteFile(in, s, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command("as", "--64", "-o", out, in).CombinedOutput(); err != nil {
		t.Fatalf("as %s: %v\n%s", in, err, msg)
	}
	return out
}

// Runner runs a package's tests and then removes the cached compiler
// outputs: func TestMain(m *testing.M) { testutil.Main(asmtest.Runner{M: m}) }.
type Runner struct{ M interface{ Run() int } }

// Run runs the tests.
func (r Runner) Run() int {
	defer Cleanup()
	return r.M.Run()
}
