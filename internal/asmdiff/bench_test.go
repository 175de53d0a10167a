package asmdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// BenchmarkGenerateRealProgram measures Generate on the real-program case
// at -O2 -g.
func BenchmarkGenerateRealProgram(b *testing.B) {
	flags := []string{"-O2", "-g"}
	orig := asmtest.CompileFile(b, "testdata/cases/realprog/orig.c", flags)
	patched := asmtest.CompileFile(b, "testdata/cases/realprog/patched.c", flags)
	b.SetBytes(int64(len(orig) + len(patched)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := Generate(orig, patched, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGenerateSQLite measures Generate on the amalgamated sqlite3.c
// compiled with -O2 -g, against a copy with one function edited and lines
// added above it, and reports gcc's own -S time beside it: gensrc runs once
// per translation unit of every patched build, and must stay well below
// what the compiler spends. Set HOTPATCH_BENCH_C to sqlite3.c
// (testdata/fetch-sqlite3.sh fetches and builds it).
func BenchmarkGenerateSQLite(b *testing.B) {
	path := os.Getenv("HOTPATCH_BENCH_C")
	if path == "" {
		b.Skip("skipped: set HOTPATCH_BENCH_C to the amalgamated sqlite3.c (see testdata/fetch-sqlite3.sh)")
	}
	testutil.RequireGCC(b)
	src, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	const fn = "SQLITE_API int sqlite3_complete(const char *zSql){"
	const stmt = "        if( *zSql==0 ) return state==1;"
	if !strings.Contains(string(src), fn) || strings.Count(string(src), stmt) != 1 {
		b.Skipf("skipped: %s is not the sqlite3.c this benchmark edits (no sqlite3_complete to change)", path)
	}
	edited := strings.Replace(string(src), stmt, "        if( *zSql==0 ) return state==1 || state==2;", 1)
	edited = strings.Replace(edited, fn, "/* Lines added above a function\n * shift every later line.\n */\n"+fn, 1)

	dir := b.TempDir()
	compile := func(name, text string) ([]byte, time.Duration) {
		c := filepath.Join(dir, name+".c")
		s := filepath.Join(dir, name+".s")
		if err := os.WriteFile(c, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if out, err := exec.Command("gcc", "-O2", "-g", "-S", "-o", s, c).CombinedOutput(); err != nil {
			b.Fatalf("gcc: %v\n%s", err, out)
		}
		d := time.Since(start)
		data, err := os.ReadFile(s)
		if err != nil {
			b.Fatal(err)
		}
		return data, d
	}
	orig, gccTime := compile("sqlite3", string(src))
	patched, _ := compile("sqlite3", edited)

	b.SetBytes(int64(len(orig) + len(patched)))
	b.ResetTimer()
	start := time.Now()
	var rep *Report
	for i := 0; i < b.N; i++ {
		_, rep, err = Generate(orig, patched, Options{})
		if err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	found := false
	for _, f := range rep.Functions {
		found = found || f.Name == "sqlite3_complete"
	}
	if !found {
		b.Fatalf("the edited function is not in the report: %+v", rep.Functions)
	}
	b.ReportMetric(gccTime.Seconds(), "gcc-S-s")
	b.ReportMetric(per.Seconds()/gccTime.Seconds()*100, "%-of-gcc")
	b.ReportMetric(float64(len(rep.Functions)), "functions")
}
