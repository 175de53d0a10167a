package build

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// lineCases are pairs of sources where a diff moves lines. Every line
// "int mark_NAME = __LINE__;" that both versions have must preprocess to
// the original number; marks only the patched version has must keep their
// number in the patched file. The hard places to put a directive (block
// comments, splices, raw strings, macro arguments, skipped groups) sit
// right after the added lines.
var lineCases = []struct {
	name, lang, orig, patched string
}{
	{name: "comment-above", lang: "c", // assert(x) is a mark too
		orig: "#include <assert.h>\nint mark_a = __LINE__;\nint f(int x)\n{\n\tassert(x);\n\treturn x;\n}\nint mark_b = __LINE__;\n",
		patched: "#include <assert.h>\n/* A comment\n * of three lines. */\nint mark_a = __LINE__;\nint f(int x)\n{\n\tassert(x);\n\treturn x;\n}\n" +
			"int mark_new = __LINE__;\nint mark_b = __LINE__;\n"},
	{name: "deleted", lang: "c",
		orig:    "int mark_a = __LINE__;\nint gone1;\nint gone2;\nint gone3;\nint mark_b = __LINE__;\n",
		patched: "int mark_a = __LINE__;\nint mark_b = __LINE__;\n"},
	{name: "inside-block-comment", lang: "c",
		orig:    "/* start\n * end */\nint mark_a = __LINE__;\n",
		patched: "/* start\n * added\n * added\n * end */\nint mark_a = __LINE__;\n"},
	{name: "inside-macro-definition", lang: "c",
		orig:    "#define TWICE(x) \\\n\t((x) + \\\n\t (x))\nint mark_a = __LINE__;\n",
		patched: "#define TWICE(x) \\\n\t((x) + \\\n\t 0 + \\\n\t (x))\nint mark_a = __LINE__;\n"},
	{name: "inside-call-arguments", lang: "c",
		orig:    "#define SUM(a, b) ((a) + (b))\nint v = SUM(1,\n\t2);\nint mark_a = __LINE__;\n",
		patched: "#define SUM(a, b) ((a) + (b))\nint v = SUM(1,\n\t/* two */\n\t2);\nint mark_a = __LINE__;\n"},
	{name: "spliced-string", lang: "c",
		orig:    "const char *s = \"one \\\ntwo\";\nint mark_a = __LINE__;\n",
		patched: "const char *s = \"one \\\nand \\\ntwo\";\nint mark_a = __LINE__;\n"},
	{name: "spliced-line-comment", lang: "c",
		orig:    "// a comment \\\n   that goes on\nint mark_a = __LINE__;\n",
		patched: "// a comment \\\n   that goes on \\\n   and on\nint mark_a = __LINE__;\n"},
	{name: "raw-string", lang: "c++",
		orig:    "const char *s = R\"x(one\n)\" \"(\n)x\";\nint mark_a = __LINE__;\n",
		patched: "const char *s = R\"x(one\n#line 1\n)\" \"(\n)x\";\nint mark_a = __LINE__;\n"},
	{name: "quotes-and-separators", lang: "c++",
		orig:    "int big = 1'000'000;\nchar q = '\"';\nconst char *t = \"/*\";\nint mark_a = __LINE__;\n",
		patched: "int big = 1'000'000;\nint added = 2'000;\nchar q = '\"';\nconst char *t = \"/*\";\nint mark_a = __LINE__;\n"},
	{name: "skipped-group", lang: "c",
		orig:    "#if 0\nit's not code\n#endif\nint mark_a = __LINE__;\n#ifdef NOPE\n#else\nint mark_b = __LINE__;\n#endif\nint mark_c = __LINE__;\n",
		patched: "#if 0\nit's not code\nneither is this\n#endif\nint mark_a = __LINE__;\n#ifdef NOPE\nint x;\n#else\nint mark_b = __LINE__;\n#endif\nint mark_c = __LINE__;\n"},
	{name: "active-branch-then-else", lang: "c",
		orig:    "#if 1\nint a;\n#else\nint b;\n#endif\nint mark_a = __LINE__;\n",
		patched: "#if 1\nint a;\nint a2;\n#else\nint b;\n#endif\nint mark_a = __LINE__;\n"},
	{name: "branches-open-one-parenthesis", lang: "c",
		orig: "int f(int, int);\nint g(void) { return f(\n#if 1\n1,\n#else\n0,\n#endif\n2); }\nint mark_a = __LINE__;\n",
		patched: "int f(int, int);\n\nint g(void) { return f(\n#if 1\n1,\n#else\n0,\n#endif\n2); }\n" +
			"int mark_a = __LINE__;\n"},
}

var (
	markRE   = regexp.MustCompile(`int mark_(\w+) = (\d+);`)
	assertRE = regexp.MustCompile(`__assert_fail \("([^"]*)", "[^"]*", (\d+),`)
)

// preprocess runs the real preprocessor and returns the marks' numbers and
// the token stream with them blanked out.
func preprocess(t *testing.T, dir, lang string, src []byte) (map[string]int, string) {
	t.Helper()
	// One name for every version, so that __FILE__ is the same.
	path := filepath.Join(dir, "src")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-x", lang, "-E", "-P", path}
	if lang == "c++" {
		args = append(args, "-std=gnu++17")
	}
	cmd := exec.Command("gcc", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gcc -E: %v\n%s\n%s", err, stderr.Bytes(), src)
	}
	marks := map[string]int{}
	for _, m := range markRE.FindAllStringSubmatch(string(out), -1) {
		marks[m[1]], _ = strconv.Atoi(m[2])
	}
	for _, m := range assertRE.FindAllStringSubmatch(string(out), -1) {
		marks["assert("+m[1]+")"], _ = strconv.Atoi(m[2])
	}
	tokens := markRE.ReplaceAllString(string(out), "int mark_$1 = N;")
	return marks, assertRE.ReplaceAllString(tokens, `__assert_fail ("$1", F, N,`)
}

func TestLineStable(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range lineCases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out, n, why, stuck := lineStable([]byte(c.orig), []byte(c.patched))
			if why != "" || stuck != 0 {
				t.Fatalf("refused (%q) or stuck at line %d", why, stuck)
			}
			t.Logf("%d directives:\n%s", n, out)
			origMarks, _ := preprocess(t, dir, c.lang, []byte(c.orig))
			plainMarks, plainTokens := preprocess(t, dir, c.lang, []byte(c.patched))
			gotMarks, gotTokens := preprocess(t, dir, c.lang, out)
			if gotTokens != plainTokens {
				t.Errorf("the directives changed the program:\n%s\nwant:\n%s", gotTokens, plainTokens)
			}
			if len(gotMarks) == 0 {
				t.Fatal("no marks")
			}
			for name, got := range gotMarks {
				want, ok := origMarks[name]
				if !ok {
					want = plainMarks[name] // new: its line in the patched file
				}
				if got != want {
					t.Errorf("%s is on line %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestLineStableLeavesOwnLineDirectives(t *testing.T) {
	orig := []byte("#line 100 \"gen.y\"\nint a;\n")
	patched := []byte("#line 100 \"gen.y\"\n\nint a;\n")
	out, n, why, _ := lineStable(orig, patched)
	if why == "" || n != 0 || !bytes.Equal(out, patched) {
		t.Fatalf("a file with #line of its own was changed (%d directives, reason %q)", n, why)
	}
	if !strings.Contains(why, "line 1") {
		t.Errorf("the reason does not name the line: %q", why)
	}
}

// A parenthesis that never closes (in a skipped group, say) leaves no
// place for a directive; the build log says from which line.
func TestLineStableStuck(t *testing.T) {
	orig := []byte("#if 0\n(\n#endif\nint a;\nint b;\n")
	patched := []byte("#if 0\n(\n#endif\nint a;\nint added;\nint b;\n")
	out, n, why, stuck := lineStable(orig, patched)
	if why != "" || n != 0 || !bytes.Equal(out, patched) || stuck != 6 {
		t.Fatalf("got %d directives, reason %q, stuck at %d; want none, stuck at line 6:\n%s", n, why, stuck, out)
	}
}

func TestMatchLines(t *testing.T) {
	split := func(s string) [][]byte { return splitLines([]byte(s)) }
	for _, c := range []struct {
		a, b string
		// want is the pairing where it is the only good one; minimum
		// is how many lines must be paired otherwise.
		want    []int
		minimum int
	}{
		{a: "a\nb\nc\n", b: "a\nb\nc\n", want: []int{0, 1, 2}},
		{a: "a\nb\nc\n", b: "x\na\nb\nc\n", want: []int{-1, 0, 1, 2}},
		{a: "a\nb\nc\n", b: "a\nc\n", want: []int{0, 2}},
		{a: "f\n{\n}\ng\n{\n}\n", b: "/* new */\nf\n{\n}\ng\n{\n\tx;\n}\n", want: []int{-1, 0, 1, 2, 3, 4, -1, 5}},
		{a: "}\na\n}\nb\n}\n", b: "}\nb\n}\na\n}\n", minimum: 3},
		{a: "x\ny\n}\n}\n", b: "}\n}\ny\nx\n", minimum: 2},
	} {
		a, b := split(c.a), split(c.b)
		got := matchLines(a, b)
		paired, last := 0, -1
		for k, x := range got {
			if x < 0 {
				continue
			}
			if x <= last || !bytes.Equal(a[x], b[k]) {
				t.Fatalf("matchLines(%q, %q) = %v: not an order-keeping pairing of equal lines", c.a, c.b, got)
			}
			last = x
			paired++
		}
		if c.want != nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("matchLines(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if paired < c.minimum {
			t.Errorf("matchLines(%q, %q) = %v pairs %d lines, want at least %d", c.a, c.b, got, paired, c.minimum)
		}
	}
}

// FuzzLineStable checks, for any pair of files, that the output is the
// patched file with the directives added before lines where one may stand,
// and that a file compared with itself gets none.
func FuzzLineStable(f *testing.F) {
	for _, c := range lineCases {
		f.Add([]byte(c.orig), []byte(c.patched))
	}
	f.Fuzz(func(t *testing.T, orig, patched []byte) {
		if ins, why := lineDirectives(patched, patched); why == "" && len(ins) != 0 {
			t.Fatalf("a file compared with itself gets directives %v", ins)
		}
		ins, why := lineDirectives(orig, patched)
		out, n, why2, _ := lineStable(orig, patched)
		if why != why2 {
			t.Fatalf("lineDirectives says %q, lineStable %q", why, why2)
		}
		if why != "" {
			if n != 0 || !bytes.Equal(out, patched) {
				t.Fatal("a refused file was changed")
			}
			return
		}
		lines := splitLines(patched)
		scan := scanLines(patched, len(lines))
		for k, d := range ins {
			if k > 0 && d.before <= ins[k-1].before || d.before >= len(lines) || !scan.safe[d.before] || d.number < 1 {
				t.Fatalf("directive %d (%v) is out of order or before a line where none may stand", k, d)
			}
		}
		var back []byte
		k := 0
		for i, l := range splitLines(out) {
			if k < n && i == ins[k].before+k {
				if want := "#line " + strconv.Itoa(ins[k].number); strings.TrimRight(string(l), "\r\n") != want {
					t.Fatalf("line %d of the output is %q, want %q", i+1, l, want)
				}
				k++
				continue
			}
			back = append(back, l...)
		}
		if !bytes.Equal(back, patched) {
			t.Fatalf("the output without its %d directives is not the patched file", n)
		}
	})
}

// A fix that adds a comment above every function, in the source and in
// the header it includes, patches exactly the function whose statements
// changed, at -O2 -g, -O0 -g and -O2 -g -fPIC; the functions below it
// that use assert and __LINE__ are left alone. --exact-lines gives them
// their new numbers, and with them a place in the patch. The tree comes
// back byte for byte either way.
func TestBuildKeepsLineNumbers(t *testing.T) {
	tree := copyTree(t, "lineproj")
	sh(t, tree, "make -s")
	deployed := t.TempDir()
	for _, f := range []string{"prog", "prog-O0", "libcheck.so"} {
		sh(t, tree, "cp "+f+" "+deployed+"/")
	}
	before := treeHash(t, tree, nil)
	diff := diffPath(t, "lineproj-fix.diff")

	r := runHotpatch(t, tree, "build", diff)
	if r.status != 0 {
		t.Fatalf("hotpatch build: status %d\n%s", r.status, r.stderr)
	}
	patches := patchesByTarget(t, r)
	for _, target := range []string{"prog", "prog-O0", "libcheck.so"} {
		checkPatch(t, patches, target, filepath.Join(deployed, target), "parse_digit")
	}
	if after := treeHash(t, tree, nil); after != before {
		t.Fatal("the tree is not as it was after the build")
	}
	log, err := os.ReadFile(filepath.Join(tree, "patchroot", stateName, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"check.c", "check.h"} {
		if !strings.Contains(string(log), f+": ") || !strings.Contains(string(log), "#line directives") {
			t.Errorf("the log does not say that %s kept its line numbers:\n%s", f, log)
		}
	}

	r = runHotpatch(t, tree, "build", "--exact-lines", diff)
	if r.status != 0 {
		t.Fatalf("hotpatch build --exact-lines: status %d\n%s", r.status, r.stderr)
	}
	patches = patchesByTarget(t, r)
	for _, target := range []string{"prog", "prog-O0", "libcheck.so"} {
		p := patches[target]
		if p == nil {
			t.Fatalf("--exact-lines: no patch for %s", target)
		}
		got := strings.Join(funcNames(p), " ")
		for _, fn := range []string{"parse_digit", "scale", "where", "clamp"} {
			if !strings.Contains(" "+got+" ", " "+fn+" ") {
				t.Errorf("--exact-lines: the patch for %s replaces %s; want %s among them (its lines moved)", target, got, fn)
			}
		}
	}
	if after := treeHash(t, tree, nil); after != before {
		t.Fatal("the tree is not as it was after the --exact-lines build")
	}
}

// BenchmarkLineStable treats a file of sqlite3.c's size (about 250,000
// lines) whose fix adds a comment at the top and changes a line in the
// middle: the work the patched stage adds per changed file.
func BenchmarkLineStable(b *testing.B) {
	var orig bytes.Buffer
	for k := 0; orig.Len() < 9<<20; k++ {
		fmt.Fprintf(&orig, "/* Function %d. */\nint f%d(int x)\n{\n\tassert(x != %d);\n\tif (x > 3)\n\t\treturn g(x, \"%d\");\n\treturn x + %d;\n}\n\n", k, k, k, k, k)
	}
	lines := splitLines(orig.Bytes())
	var patched bytes.Buffer
	patched.WriteString("/*\n * The fix.\n */\n")
	for k, l := range lines {
		if k == len(lines)/2 {
			patched.WriteString("\tx = clamp(x);\n")
		}
		patched.Write(l)
	}
	b.SetBytes(int64(patched.Len()))
	// CPU time as well as wall time: on a shared machine the wall time
	// mostly measures the other tenants.
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, n, why, _ := lineStable(orig.Bytes(), patched.Bytes()); why != "" || n != 3 {
			b.Fatalf("%d directives (%s), want 3: after the comment, and before and after the new line", n, why)
		}
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(lines)), "lines")
}
