package wrapper

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// stageEnv runs the wrapper in-process in a stage, in dir, with the real
// gcc and g++ behind it.
type stageEnv struct {
	dir, state string
	stage      Stage
}

func newStageEnv(t *testing.T, stage Stage) *stageEnv {
	t.Helper()
	testutil.RequireGCC(t)
	return &stageEnv{dir: t.TempDir(), state: t.TempDir(), stage: stage}
}

func (e *stageEnv) getenv(k string) string {
	switch k {
	case EnvStage:
		return string(e.stage)
	case EnvState:
		return e.state
	case EnvCC:
		return "gcc"
	case EnvCXX:
		return "g++"
	}
	return os.Getenv(k)
}

func (e *stageEnv) wrap(t *testing.T, name, stdin string, args ...string) (int, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	self, _ := os.Executable()
	w := &Wrapper{Name: name, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: e.getenv, Self: self, Dir: e.dir}
	st, err := w.Run(args)
	return st, out.String() + errb.String(), err
}

func (e *stageEnv) mustWrap(t *testing.T, name string, args ...string) {
	t.Helper()
	if st, out, err := e.wrap(t, name, "", args...); st != 0 || err != nil {
		t.Fatalf("%s %s: status %d, %v\n%s", name, strings.Join(args, " "), st, err, out)
	}
}

func (e *stageEnv) write(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *stageEnv) read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plain runs the real compiler in dir, as a build without the wrapper.
func (e *stageEnv) plain(t *testing.T, prog, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = e.dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (e *stageEnv) journal(t *testing.T) []Record {
	t.Helper()
	recs, err := State{Dir: e.state}.ReadJournal(e.stage)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (e *stageEnv) kinds(t *testing.T) []string {
	var k []string
	for _, r := range e.journal(t) {
		k = append(k, r.Kind)
	}
	return k
}

const cSource = `#include <stdio.h>
static int counter;
int twice(int x) { counter++; return 2 * x + counter; }
int main(void) { printf("%d\n", twice(20)); return 0; }
`

const cxxSource = `#include <string>
#include <vector>
namespace ns {
template <typename T> struct Box { T v; T get() const { return v; } };
std::string greet(const std::string &who) { return "hi " + who; }
}
int use(int x) { ns::Box<int> b{x}; std::vector<int> v{1, 2, 3}; return b.get() + (int)v.size() + (int)ns::greet("x").size(); }
`

func sameFile(t *testing.T, e *stageEnv, a, b string) {
	t.Helper()
	if !bytes.Equal(e.read(t, a), e.read(t, b)) {
		t.Errorf("%s and %s differ", a, b)
	}
}

// The original stage must reproduce a plain build's objects exactly, so
// that a tree built normally can be patched.
func TestOriginalStageObjectsAreByteIdentical(t *testing.T) {
	flagSets := [][]string{
		{"-O2", "-g"},
		{"-O0"},
		{"-O2", "-g", "-fPIC"},
		{"-O2", "-g3", "-fno-pie"},
		{"-Os", "-ggdb", "-ffunction-sections", "-fdata-sections"},
		{"-O2", "-g", "-ffile-prefix-map=SRCDIR=.", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"},
	}
	for _, flags := range flagSets {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			t.Parallel()
			e := newStageEnv(t, StageOriginal)
			e.write(t, "src/prog.c", cSource)
			e.write(t, "src/lib.cc", cxxSource)
			var fl []string
			for _, f := range flags {
				fl = append(fl, strings.ReplaceAll(f, "SRCDIR", e.dir))
			}
			e.plain(t, "gcc", "", append(fl, "-c", "src/prog.c", "-o", "plain-prog.o")...)
			e.plain(t, "g++", "", append(fl, "-c", "src/lib.cc", "-o", "plain-lib.o")...)
			e.mustWrap(t, "gcc", append(fl, "-c", "src/prog.c", "-o", "prog.o")...)
			e.mustWrap(t, "g++", append(fl, "-c", "src/lib.cc", "-o", "lib.o")...)
			sameFile(t, e, "plain-prog.o", "prog.o")
			sameFile(t, e, "plain-lib.o", "lib.o")
			recs := e.journal(t)
			if len(recs) != 2 || recs[0].Kind != KindCompile || recs[1].Kind != KindCompile {
				t.Fatalf("journal %+v, want two compilations", recs)
			}
			// The kept assembly is what gcc -S gives for the same flags.
			e.plain(t, "gcc", "", append(fl, "-S", "src/prog.c", "-o", "plain-prog.s")...)
			kept, err := os.ReadFile(recs[0].Asm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kept, e.read(t, "plain-prog.s")) {
				t.Error("kept assembly differs from gcc -S output")
			}
		})
	}
}

func TestWrapperEdgeArguments(t *testing.T) {
	t.Run("several -c sources without -o", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "a.c", "int a(void) { return 1; }\n")
		e.write(t, "sub/b.c", "int b(void) { return 2; }\n")
		e.mustWrap(t, "gcc", "-O2", "-c", "a.c", "sub/b.c")
		e.plain(t, "gcc", "", "-O2", "-c", "a.c", "-o", "pa.o")
		e.plain(t, "gcc", "", "-O2", "-c", "sub/b.c", "-o", "pb.o")
		sameFile(t, e, "a.o", "pa.o")
		sameFile(t, e, "b.o", "pb.o")
		if k := e.kinds(t); strings.Join(k, ",") != "compile,compile" {
			t.Errorf("journal kinds %v", k)
		}
	})
	t.Run("standard input", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		if st, out, err := e.wrap(t, "gcc", cSource, "-O2", "-g", "-x", "c", "-c", "-", "-o", "stdin.o"); st != 0 || err != nil {
			t.Fatalf("status %d %v %s", st, err, out)
		}
		e.plain(t, "gcc", cSource, "-O2", "-g", "-x", "c", "-c", "-", "-o", "plain.o")
		sameFile(t, e, "stdin.o", "plain.o")
	})
	t.Run("-x language switch", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "code.txt", cSource)
		e.write(t, "tpl.inc", cxxSource)
		e.mustWrap(t, "gcc", "-O2", "-x", "c", "-c", "code.txt", "-o", "code.o")
		e.mustWrap(t, "g++", "-O2", "-xc++", "-c", "tpl.inc", "-o", "tpl.o")
		e.plain(t, "gcc", "", "-O2", "-x", "c", "-c", "code.txt", "-o", "p1.o")
		e.plain(t, "g++", "", "-O2", "-xc++", "-c", "tpl.inc", "-o", "p2.o")
		sameFile(t, e, "code.o", "p1.o")
		sameFile(t, e, "tpl.o", "p2.o")
		if k := e.kinds(t); strings.Join(k, ",") != "compile,compile" {
			t.Errorf("journal kinds %v", k)
		}
	})
	t.Run("dependency files", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "inc/h.h", "#define V 3\n")
		e.write(t, "obj/.keep", "")
		e.write(t, "deps/.keep", "")
		e.write(t, "d.c", "#include \"inc/h.h\"\nint d(void) { return V; }\n")
		e.mustWrap(t, "gcc", "-MD", "-c", "d.c", "-o", "obj/d.o")
		e.mustWrap(t, "gcc", "-MMD", "-MP", "-MF", "deps/custom.d", "-MT", "target", "-c", "d.c", "-o", "obj/d2.o")
		e.mustWrap(t, "gcc", "-MMD", "-c", "d.c")
		if err := os.Rename(filepath.Join(e.dir, "obj/d.d"), filepath.Join(e.dir, "w1.d")); err != nil {
			t.Fatal(err)
		}
		os.Rename(filepath.Join(e.dir, "deps/custom.d"), filepath.Join(e.dir, "w2.d"))
		os.Rename(filepath.Join(e.dir, "d.d"), filepath.Join(e.dir, "w3.d"))
		e.plain(t, "gcc", "", "-MD", "-c", "d.c", "-o", "obj/d.o")
		e.plain(t, "gcc", "", "-MMD", "-MP", "-MF", "deps/custom.d", "-MT", "target", "-c", "d.c", "-o", "obj/d2.o")
		e.plain(t, "gcc", "", "-MMD", "-c", "d.c")
		sameFile(t, e, "w1.d", "obj/d.d")
		sameFile(t, e, "w2.d", "deps/custom.d")
		sameFile(t, e, "w3.d", "d.d")
	})
	t.Run("response file", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "dir with space/r.c", cSource)
		e.write(t, "args.rsp", "-O2 -g\n-c \"dir with space/r.c\" -o r.o\n")
		e.mustWrap(t, "gcc", "@args.rsp")
		e.plain(t, "gcc", "", "-O2", "-g", "-c", "dir with space/r.c", "-o", "p.o")
		sameFile(t, e, "r.o", "p.o")
		if k := e.kinds(t); len(k) != 1 || k[0] != KindCompile {
			t.Errorf("journal kinds %v", k)
		}
	})
	t.Run("-save-temps", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "s.c", cSource)
		e.write(t, "out/.keep", "")
		e.mustWrap(t, "gcc", "-O2", "-save-temps", "-c", "s.c", "-o", "out/s.o")
		for _, f := range []string{"out/s.o", "out/s.i", "out/s.s"} {
			os.Rename(filepath.Join(e.dir, f), filepath.Join(e.dir, "w-"+filepath.Base(f)))
		}
		e.plain(t, "gcc", "", "-O2", "-save-temps", "-c", "s.c", "-o", "out/s.o")
		sameFile(t, e, "w-s.o", "out/s.o")
		sameFile(t, e, "w-s.i", "out/s.i")
		sameFile(t, e, "w-s.s", "out/s.s")
	})
	t.Run("-flto refused", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "l.c", cSource)
		st, _, err := e.wrap(t, "gcc", "", "-O2", "-flto", "-c", "l.c")
		if st == 0 || err == nil || !strings.Contains(err.Error(), "-flto is not supported") {
			t.Fatalf("status %d, err %v: want a clear refusal", st, err)
		}
		recs := e.journal(t)
		if len(recs) != 1 || recs[0].Kind != KindFail || !strings.Contains(recs[0].Error, "-flto") {
			t.Errorf("journal %+v, want the refusal recorded", recs)
		}
		// -fno-lto after it turns LTO off again.
		e.mustWrap(t, "gcc", "-O2", "-flto", "-fno-lto", "-c", "l.c")
	})
	t.Run("-pipe", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "p.c", cSource)
		e.mustWrap(t, "gcc", "-pipe", "-O2", "-g", "-c", "p.c", "-o", "w.o")
		e.plain(t, "gcc", "", "-pipe", "-O2", "-g", "-c", "p.c", "-o", "p.o")
		sameFile(t, e, "w.o", "p.o")
	})
	t.Run("preprocess only", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "e.c", "#define X 42\nint x = X;\n")
		st, out, err := e.wrap(t, "gcc", "", "-E", "e.c")
		if st != 0 || err != nil || !strings.Contains(out, "int x = 42;") {
			t.Fatalf("status %d %v: %s", st, err, out)
		}
		e.mustWrap(t, "gcc", "-M", "e.c")
		if k := e.kinds(t); strings.Join(k, ",") != "pass,pass" {
			t.Errorf("journal kinds %v, want pass-through", k)
		}
	})
	t.Run("assembly inputs", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "plain.s", "\t.text\n\t.globl f\nf:\n\tret\n")
		e.write(t, "cpp.S", "#define RET ret\n\t.text\n\t.globl g\ng:\n\tRET\n")
		e.write(t, "mixed.c", "int m(void) { return 7; }\n")
		e.mustWrap(t, "gcc", "-c", "plain.s", "cpp.S", "mixed.c")
		for _, o := range []string{"plain.o", "cpp.o", "mixed.o"} {
			os.Rename(filepath.Join(e.dir, o), filepath.Join(e.dir, "w-"+o))
		}
		e.plain(t, "gcc", "", "-c", "plain.s", "cpp.S", "mixed.c")
		for _, o := range []string{"plain.o", "cpp.o", "mixed.o"} {
			sameFile(t, e, "w-"+o, o)
		}
		if k := e.kinds(t); strings.Join(k, ",") != "compile" {
			t.Errorf("journal kinds %v: only the C source goes through assembly", k)
		}
	})
	t.Run("compile and link in one command", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "m.c", "int helper(int);\nint main(void) { return helper(1) - 3; }\n")
		e.write(t, "h.c", "int helper(int x) { return x + 2; }\n")
		e.mustWrap(t, "gcc", "-O2", "-g", "m.c", "h.c", "-o", "prog")
		e.plain(t, "gcc", "", "-O2", "-g", "m.c", "h.c", "-o", "plain")
		sameFile(t, e, "prog", "plain")
		recs := e.journal(t)
		if len(recs) != 3 || recs[2].Kind != KindLink || recs[2].Output != filepath.Join(e.dir, "prog") {
			t.Fatalf("journal %+v", recs)
		}
		if kept, err := os.ReadFile(recs[2].Kept); err != nil || !bytes.Equal(kept, e.read(t, "prog")) {
			t.Errorf("the kept copy of the output differs from it (%v)", err)
		}
	})
	t.Run("configure probes pass through", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "conftest.c", "int main(void) { return 0; }\n")
		e.mustWrap(t, "gcc", "-O2", "conftest.c", "-o", "conftest")
		e.mustWrap(t, "gcc", "-c", "conftest.c", "-o", "/dev/null")
		if k := e.kinds(t); strings.Join(k, ",") != "pass,pass" {
			t.Errorf("journal kinds %v, want pass-through", k)
		}
	})
	t.Run("compile error", func(t *testing.T) {
		t.Parallel()
		e := newStageEnv(t, StageOriginal)
		e.write(t, "bad.c", "int f(void) { return 1 }\n")
		st, out, err := e.wrap(t, "gcc", "", "-c", "bad.c")
		if st == 0 || err == nil || !strings.Contains(err.Error(), "compile error in bad.c") || !strings.Contains(out, "error:") {
			t.Fatalf("status %d, err %v, output %q", st, err, out)
		}
	})
}

func TestOutsideABuildIsTheRealCompiler(t *testing.T) {
	testutil.RequireGCC(t)
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	self, _ := os.Executable()
	w := &Wrapper{Name: "gcc", Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(k string) string {
		if k == "PATH" {
			return os.Getenv("PATH")
		}
		return ""
	}, Self: self, Dir: dir}
	if st, err := w.Run([]string{"-dumpversion"}); st != 0 || err != nil {
		t.Fatalf("status %d %v", st, err)
	}
	want, _ := exec.Command("gcc", "-dumpversion").Output()
	if out.String() != string(want) {
		t.Errorf("-dumpversion = %q, want %q", out.String(), want)
	}
	// No state was touched: nothing to record outside a build.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the wrapper wrote %d files outside a build", len(ents))
	}
}

func TestNestedWrapperIsRefused(t *testing.T) {
	w := &Wrapper{Name: "gcc", Getenv: func(k string) string {
		if k == envNested {
			return "1"
		}
		return ""
	}}
	if st, err := w.Run([]string{"-c", "x.c"}); st == 0 || err == nil {
		t.Fatal("a wrapper reached from its own compiler ran on")
	}
}

// In the patched stage the kept original and the new assembly go to the
// differ, and links keep their relocations.
func TestPatchedStageRunsTheDifferAndKeepsRelocations(t *testing.T) {
	orig := newStageEnv(t, StageOriginal)
	orig.write(t, "m.c", cSource)
	orig.mustWrap(t, "gcc", "-O2", "-c", "m.c", "-o", "m.o")
	orig.mustWrap(t, "gcc", "m.o", "-o", "prog")

	patched := &stageEnv{dir: orig.dir, state: orig.state, stage: StagePatched}
	patched.write(t, "m.c", strings.Replace(cSource, "2 * x", "3 * x", 1))
	var calls int
	var gotOrig, gotNew []byte
	differ := func(o, p []byte, file string) ([]byte, []Change, error) {
		calls++
		gotOrig, gotNew = o, p
		if file != "m.c" {
			t.Errorf("differ told the file is %q", file)
		}
		// What the differ would add for a changed twice(): its new
		// body in a non-allocated section.
		return append(append([]byte{}, o...), "\n# hotpatch: patch sections follow\n\t.section .hotpatch.text,\"x\",@progbits\ntwice.hotpatch:\n\tret\n"...), []Change{{Name: "twice", Status: "changed"}}, nil
	}
	var out bytes.Buffer
	self, _ := os.Executable()
	w := &Wrapper{Name: "gcc", Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: patched.getenv, Self: self, Dir: patched.dir, Differ: differ}
	if st, err := w.Run([]string{"-O2", "-c", "m.c", "-o", "m.o"}); st != 0 || err != nil {
		t.Fatalf("status %d %v\n%s", st, err, out.String())
	}
	if calls != 1 || !bytes.Contains(gotNew, []byte("leal")) && !bytes.Contains(gotNew, []byte("lea")) || bytes.Equal(gotOrig, gotNew) {
		t.Fatalf("differ called %d times", calls)
	}
	keptOrig, _ := os.ReadFile(State{Dir: orig.state}.AsmPath(StageOriginal, filepath.Join(orig.dir, "m.o")))
	if !bytes.Equal(keptOrig, gotOrig) {
		t.Error("the differ did not get the kept original assembly")
	}
	if st, err := w.Run([]string{"m.o", "-o", "prog"}); st != 0 || err != nil {
		t.Fatalf("link: status %d %v\n%s", st, err, out.String())
	}
	recs := patched.journal(t)
	if len(recs) != 2 || recs[0].Kind != KindCompile || len(recs[0].Changes) != 1 || recs[0].Changes[0].Name != "twice" || recs[1].Kind != KindLink {
		t.Fatalf("patched journal %+v", recs)
	}
	cmd := exec.Command("readelf", "-SW", filepath.Join(patched.dir, "prog"))
	sections, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".hotpatch.text", ".rela.text", ".tm_clone_table"} {
		if !bytes.Contains(sections, []byte(want)) {
			t.Errorf("patched link lacks %s (relocations kept with -q, .tm_clone_table pinned)", want)
		}
	}

	// An unchanged translation unit is assembled from the original, and
	// the differ is not asked.
	calls = 0
	patched.write(t, "m.c", cSource)
	if st, err := w.Run([]string{"-O2", "-c", "m.c", "-o", "m.o"}); st != 0 || err != nil {
		t.Fatalf("status %d %v", st, err)
	}
	if calls != 0 {
		t.Errorf("differ called for identical assembly")
	}
	orig.plain(t, "gcc", "", "-O2", "-c", "m.c", "-o", "plain.o")
	sameFile(t, orig, "m.o", "plain.o")
}
