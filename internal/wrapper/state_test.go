package wrapper

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// Parallel wrappers (make -j) append to one journal: every line must come
// back whole.
func TestJournalParallelAppends(t *testing.T) {
	s := State{Dir: t.TempDir()}
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rec := Record{Kind: KindCompile, Pid: i, Source: strings.Repeat("s", 200), Changes: []Change{{Name: "f", Status: "changed"}}}
			if err := s.Append(StagePatched, rec); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	recs, err := s.ReadJournal(StagePatched)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	if c, total := s.CountRecords(StagePatched); c != n || total != n {
		t.Errorf("CountRecords = %d, %d", c, total)
	}
	if recs, err := s.ReadJournal(StageOriginal); err != nil || recs != nil {
		t.Errorf("missing journal: %v %v", recs, err)
	}
}

func TestJournalTornLastLine(t *testing.T) {
	s := State{Dir: t.TempDir()}
	if err := s.Append(StageOriginal, Record{Kind: KindLink, Output: "/x/prog"}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(s.JournalPath(StageOriginal), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"comp`)
	f.Close()
	recs, err := s.ReadJournal(StageOriginal)
	if err == nil || len(recs) != 1 || recs[0].Output != "/x/prog" {
		t.Fatalf("records %+v, err %v: want the whole record and an error for the torn one", recs, err)
	}
}

func TestStatePathsAreDistinct(t *testing.T) {
	s := State{Dir: "/state"}
	a := s.AsmPath(StageOriginal, "/src/a/x.o")
	b := s.AsmPath(StageOriginal, "/src/b/x.o")
	if a == b || filepath.Dir(a) != "/state/asm/original" || !strings.HasSuffix(a, "-x.o.s") {
		t.Errorf("paths %s %s", a, b)
	}
	if s.AsmPath(StagePatched, "/src/a/x.o") == a {
		t.Error("stages share a path")
	}
}

func FuzzDecodeJournal(f *testing.F) {
	var seed bytes.Buffer
	s := State{Dir: f.TempDir()}
	s.Append(StageOriginal, Record{Kind: KindCompile, Source: "/a.c", Object: "/a.o", Asm: "/s/a.s"})
	s.Append(StageOriginal, Record{Kind: KindLink, Output: "/p", Kept: "/k", Inputs: []string{"/a.o"}})
	data, _ := os.ReadFile(s.JournalPath(StageOriginal))
	seed.Write(data)
	f.Add(seed.Bytes())
	f.Add([]byte("{}\n\n{\"kind\":1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := decodeJournal(bytes.NewReader(data), "fuzz")
		if err == nil {
			again, err := decodeJournal(bytes.NewReader(data), "fuzz")
			if err != nil || !reflect.DeepEqual(recs, again) {
				t.Fatal("decoding is not deterministic")
			}
		}
	})
}
