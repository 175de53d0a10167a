package elfobj

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func openCached(t testing.TB, c *Cache, path string) *Object {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := c.Open(f, path)
	if err != nil {
		t.Fatalf("cache open %s: %v", path, err)
	}
	return o
}

func entries(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestCacheRoundTrip checks that a model read back from the cache equals
// the parsed one in every field, exported or not: a field added to
// Object, Symbol or DynReloc without a place in the entry format fails
// here.
func TestCacheRoundTrip(t *testing.T) {
	c := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	for name, path := range subjects(t) {
		parsed, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		before := len(entries(t, c.Dir))
		miss := openCached(t, c, path)
		if got := len(entries(t, c.Dir)); got != before+1 {
			t.Fatalf("%s: %d cache entries after a miss, want %d", name, got, before+1)
		}
		hit := openCached(t, c, path)
		if !reflect.DeepEqual(parsed, miss) {
			t.Errorf("%s: the model returned on a miss differs from the parsed one", name)
		}
		if !reflect.DeepEqual(parsed, hit) {
			t.Errorf("%s: the model read from the cache differs from the parsed one:\nparsed %+v\ncached %+v", name, parsed, hit)
		}
		if len(parsed.Symbols()) > 0 {
			s := parsed.Symbols()[len(parsed.Symbols())-1]
			if _, err := hit.Lookup(s.String()); err != nil && s.Defined() {
				t.Errorf("%s: lookup of %s in the cached model: %v", name, s, err)
			}
		}
	}
}

// TestCacheEntryIsPerFile checks that a stripped copy, which keeps the
// build-id but loses .symtab, gets an entry of its own, and that a
// damaged entry is parsed again and replaced.
func TestCacheEntryIsPerFile(t *testing.T) {
	testutil.RequireTools(t, "strip")
	c := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	path := buildProg(t, true)
	stripped := filepath.Join(t.TempDir(), "stripped")
	if out, err := exec.Command("strip", "-o", stripped, path).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, out)
	}
	full := openCached(t, c, path)
	small := openCached(t, c, stripped)
	if len(entries(t, c.Dir)) != 2 {
		t.Fatalf("the stripped copy shares the original's entry: %v", entries(t, c.Dir))
	}
	if len(small.Symbols()) >= len(full.Symbols()) {
		t.Fatalf("the stripped copy has %d symbols, the original %d: strip removed nothing?", len(small.Symbols()), len(full.Symbols()))
	}
	if again := openCached(t, c, stripped); len(again.Symbols()) != len(small.Symbols()) {
		t.Errorf("the stripped copy's entry gives %d symbols, parsing gave %d", len(again.Symbols()), len(small.Symbols()))
	}

	c2 := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	openCached(t, c2, path)
	entry := entries(t, c2.Dir)[0]
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(entry, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if o := openCached(t, c2, path); !reflect.DeepEqual(o, openCached(t, &Cache{Dir: t.TempDir()}, path)) {
		t.Error("a damaged entry gave a model that differs from parsing")
	}
	if fixed, err := os.ReadFile(entry); err != nil || reflect.DeepEqual(fixed, b) {
		t.Errorf("the damaged entry was not rewritten (%v)", err)
	}
}

// TestCacheUnwritableDirStillParses: a cache that cannot be written costs
// a parse, not the operation.
func TestCacheUnwritableDirStillParses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(file, "cache")}
	path := buildProg(t, false)
	parsed, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if o := openCached(t, c, path); !reflect.DeepEqual(o, parsed) {
		t.Error("the model differs from parsing when the cache cannot be written")
	}
}

// FuzzDecodeCacheEntry feeds mutated entries to the decoder: none may
// panic, and whatever decodes must answer queries without panicking.
func FuzzDecodeCacheEntry(f *testing.F) {
	for _, p := range []string{buildProg(f, true), buildProg(f, false)} {
		o, err := Open(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(encodeObject(o))
	}
	f.Add([]byte(cacheMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Most mutations would only break the checksum; fix it, so that
		// they reach the decoder's own bounds checks.
		if len(data) >= 4 {
			binary.LittleEndian.PutUint32(data[len(data)-4:], crc32.ChecksumIEEE(data[:len(data)-4]))
		}
		o, err := decodeObject(data)
		if err != nil {
			return
		}
		// A bounded number of queries: an entry that passes every check
		// can still hold thousands of symbols.
		for i, s := range o.Symbols() {
			if i == 64 {
				break
			}
			_, _ = o.Lookup(s.String())
			_, _ = o.FuncAt(s.Value)
		}
		_ = o.GOTSlots("x")
		_ = o.ExecRanges()
	})
}

func BenchmarkCachedLibc(b *testing.B) {
	if _, err := os.Stat(systemLibc); err != nil {
		b.Skipf("skipped: %s is missing (%v)", systemLibc, err)
	}
	c := &Cache{Dir: b.TempDir()}
	openCached(b, c, systemLibc)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		openCached(b, c, systemLibc)
	}
}

func BenchmarkDecodeLibcEntry(b *testing.B) {
	o, err := Open(systemLibc)
	if err != nil {
		b.Skipf("skipped: %s cannot be read (%v)", systemLibc, err)
	}
	entry := encodeObject(o)
	b.ReportAllocs()
	b.SetBytes(int64(len(entry)))
	for i := 0; i < b.N; i++ {
		if _, err := decodeObject(entry); err != nil {
			b.Fatal(err)
		}
	}
}
