package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/wrapper"
)

// The files a translation unit uses come from the .file directives gcc
// writes: DWARF 5's numbered form with a directory, and the plain form.
func TestAsmFiles(t *testing.T) {
	dir := t.TempDir()
	asm := filepath.Join(dir, "x.s")
	const text = "\t.file\t\"x.c\"\n\t.text\n\t.file 0 \"/build/proj\" \"src/x.c\"\n\t.file 1 \"src/x.c\"\n\t.file 2 \"include\" \"x.h\"\n\t.file 3 \"/usr/include/stdio.h\"\n\t.file 4 \"/usr/lib/gcc\" \"stddef.h\"\n"
	if err := os.WriteFile(asm, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got := asmFiles(asm, "/work")
	want := []string{"/work/x.c", "/build/proj/src/x.c", "/build/proj/src/x.c", "/build/proj/include/x.h", "/usr/include/stdio.h", "/usr/lib/gcc/stddef.h"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// A changed header reaches the units whose assembly names it; a changed
// source its own unit; units the patched stage compiled are not missed.
func TestMissedUnits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aAsm := write("a.s", "\t.file\t\"a.c\"\n\t.file 1 \"a.c\"\n\t.file 2 \"deps/h.h\"\n")
	bAsm := write("b.s", "\t.file\t\"b.c\"\n")
	cAsm := write("c.s", "\t.file\t\"c.c\"\n\t.file 2 \"deps/h.h\"\n")
	orig := []wrapper.Record{
		{Kind: wrapper.KindCompile, Source: "/t/a.c", Object: "/t/a.o", Asm: aAsm, Dir: "/t"},
		{Kind: wrapper.KindCompile, Source: "/t/b.c", Object: "/t/b.o", Asm: bAsm, Dir: "/t"},
		{Kind: wrapper.KindCompile, Source: "/t/c.c", Object: "/t/c.o", Asm: cAsm, Dir: "/t"},
		{Kind: wrapper.KindLink, Output: "/t/app"},
	}
	patched := []wrapper.Record{{Kind: wrapper.KindCompile, Source: "/t/c.c", Object: "/t/c.o"}}
	var got []string
	for _, m := range missedUnits(orig, patched, []string{"/t/deps/h.h", "/t/b.c", "/t/README"}) {
		got = append(got, m.rec.Object+" "+m.changed)
	}
	want := []string{"/t/a.o /t/deps/h.h", "/t/b.o /t/b.c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("missed %q, want %q", got, want)
	}
}

func TestDepFile(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "x.c", "-o", "x.o"}, ""},
		{[]string{"-MMD", "-c", "x.c", "-o", "x.o"}, "/d/x.d"},
		{[]string{"-MD", "-MF", "deps/x.dep", "-c", "x.c"}, "/t/deps/x.dep"},
		{[]string{"-MD", "-MF/abs/x.dep", "-c", "x.c"}, "/abs/x.dep"},
	} {
		if got := depFile(c.args, "/d/x.o", "/t"); got != c.want {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}

// Archives made by ar itself, with short and long member names, are read
// member by member; the one that holds the object is found by name and
// content.
func TestArchivesHolding(t *testing.T) {
	testutil.RequireTools(t, "ar")
	dir := t.TempDir()
	long := strings.Repeat("long", 6) + ".o"
	for name, text := range map[string]string{"a.o": "first object", long: "second object, longer", "odd.o": "odd"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ar := exec.Command("ar", "rcs", "lib.a", "odd.o", "a.o", long)
	ar.Dir = dir
	if out, err := ar.CombinedOutput(); err != nil {
		t.Fatalf("ar: %v\n%s", err, out)
	}
	members, err := readArchive(filepath.Join(dir, "lib.a"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range members {
		names = append(names, m.name+"="+string(m.data))
	}
	if want := []string{"odd.o=odd", "a.o=first object", long + "=second object, longer"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("members %q, want %q", names, want)
	}
	links := []wrapper.Record{{Kind: wrapper.KindLink, Output: "/t/app", Inputs: []string{"/t/main.o", filepath.Join(dir, "lib.a")}}}
	got, other, err := archivesHolding(links, filepath.Join(dir, long), []byte("second object, longer"))
	if err != nil || !reflect.DeepEqual(got, []string{filepath.Join(dir, "lib.a")}) || len(other) != 0 {
		t.Errorf("archives %v, namesakes %v, %v", got, other, err)
	}
	// Another folder's a.o, or a stale one: not this object.
	got, other, err = archivesHolding(links, filepath.Join("/elsewhere", "a.o"), []byte("another build of it"))
	if err != nil || len(got) != 0 || len(other) != 1 || other[0].archive != filepath.Join(dir, "lib.a") {
		t.Fatalf("a member with other bytes: archives %v, namesakes %v, %v", got, other, err)
	}
	// libtool's other object of the same source accounts for it.
	if !other[0].isOneOf(map[string][]byte{"/t/.libs/a.o": []byte("first object")}) || other[0].isOneOf(map[string][]byte{"/t/b.o": []byte("b")}) {
		t.Errorf("isOneOf does not tell the member apart")
	}
}
