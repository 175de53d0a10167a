package asmdiff_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/asmdiff"
	"github.com/hotpatch/hotpatch/internal/cli"
)

// TestGensrcRealProgram runs "hotpatch gensrc" the way a user does, on a
// real multi-function program with a bug fixed in one function and lines
// added above most of the file, compiled with -O2 -g: the report names
// exactly that function, and the output assembles.
func TestGensrcRealProgram(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "kvd.orig.s")
	patched := filepath.Join(dir, "kvd.patched.s")
	flags := []string{"-O2", "-g"}
	writeFile(t, orig, asmtest.CompileFile(t, "testdata/cases/realprog/orig.c", flags))
	writeFile(t, patched, asmtest.CompileFile(t, "testdata/cases/realprog/patched.c", flags))
	out := filepath.Join(dir, "kvd.s")
	report := filepath.Join(dir, "report.json")
	code := cli.Main([]string{"hotpatch", "gensrc", "-o", out, "--json", report, orig, patched})
	if code != 0 {
		t.Fatalf("hotpatch gensrc exited with %d", code)
	}
	var rep asmdiff.Report
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	if len(rep.Functions) != 1 || rep.Functions[0].Name != "cmd_incr" || rep.Functions[0].Status != "changed" {
		t.Fatalf("functions: %+v, want exactly cmd_incr changed", rep.Functions)
	}
	if len(rep.Variables) != 0 || rep.UnchangedFunctions == 0 {
		t.Fatalf("variables %+v, unchanged %d", rep.Variables, rep.UnchangedFunctions)
	}
	for _, key := range []string{`"functions"`, `"variables"`, `"unchanged_functions"`, `"name"`, `"status"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("report lacks %s:\n%s", key, raw)
		}
	}
	s, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(s), "cmd_incr.hotpatch:") {
		t.Fatal("the output has no cmd_incr.hotpatch")
	}
	asmtest.Assemble(t, s)
}

// TestGensrcRefusal checks that a refused change exits non-zero with one
// line that names the variable.
func TestGensrcRefusal(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.s")
	patched := filepath.Join(dir, "patched.s")
	writeFile(t, orig, asmtest.CompileFile(t, "testdata/cases/var_value/orig.c", []string{"-O2"}))
	writeFile(t, patched, asmtest.CompileFile(t, "testdata/cases/var_value/patched.c", []string{"-O2"}))
	stderr := captureStderr(t, func() {
		if code := cli.Main([]string{"hotpatch", "gensrc", "-o", filepath.Join(dir, "out.s"), orig, patched}); code == 0 {
			t.Error("hotpatch gensrc accepted a changed variable")
		}
	})
	if !strings.Contains(stderr, "variable limit changed") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("stderr %q: want one line naming the variable", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.s")); err == nil {
		t.Error("an output was written although the change was refused")
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// captureStderr runs f with the process's standard error redirected,
// which is where cli.Main writes its one-line reason.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(r)
		done <- b.String()
	}()
	f()
	os.Stderr = saved
	w.Close()
	return <-done
}
