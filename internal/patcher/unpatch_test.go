package patcher

import (
	"errors"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
)

// A patch built for an executable and its library is two files with one
// id, applied in one pause; unpatch by id, and unpatch of the newest,
// must remove both parts, never one.
func TestUnpatchRemovesAnIDFromEveryObject(t *testing.T) {
	t.Parallel()
	app, lib := fixture(t, true)
	tg := startApp(t, app, "2")
	before := anonMaps(t, tg.Pid)
	both := func(id string, add int) {
		exe := patchertest.Build(t, patchertest.Spec{ID: id, Level: 1, Target: app,
			Source: `int compute_hp(int x) { return x + ` + strconv.Itoa(add) + `; }`, Replace: map[string]string{"compute": "compute_hp"}})
		so := patchertest.Build(t, patchertest.Spec{ID: id, Level: 1, Target: lib, Flags: []string{"-fPIC"},
			Source: `int lib_value_hp(int x) { return x * 2 + ` + strconv.Itoa(add) + `; }`, Replace: map[string]string{"lib_value": "lib_value_hp"}})
		res := apply(t, tg.Pid, exe, so)
		if len(res.Patches) != 2 {
			t.Fatalf("apply %s: %+v", id, res.Patches)
		}
	}
	other := patchertest.Build(t, patchertest.Spec{ID: "other", Level: 1, Target: app,
		Source: `const char *message_hp(void) { return "other"; }`, Replace: map[string]string{"message": "message_hp"}})

	both("pair", 100)
	apply(t, tg.Pid, other)
	off := expectAll(t, tg, len(tg.Output()), 2, "compute=101 message=other ")
	expectAll(t, tg, off, 2, "lib=102 ")

	res := unpatch(t, tg.Pid, "pair")
	objects := removedObjects(res)
	if len(objects) != 2 || filepath.Base(objects[0]) != "app" || filepath.Base(objects[1]) != "libfixlib.so" {
		t.Fatalf("unpatch -i pair removed %v, want the app and libfixlib.so", objects)
	}
	now := len(tg.Output())
	expectAll(t, tg, now, 2, "compute=2 message=other ")
	off = expectAll(t, tg, now, 2, "lib=2 ")
	if ids := appliedIDs(t, tg.Pid); strings.Join(ids, ",") != "other" {
		t.Fatalf("after unpatch -i pair, applied: %v", ids)
	}

	// The newest id spans two objects again: unpatch without an id
	// removes both parts.
	both("pair2", 200)
	expectAll(t, tg, off, 2, "compute=201 message=other ")
	expectAll(t, tg, off, 2, "lib=202 ")
	res = unpatch(t, tg.Pid, "")
	if objects := removedObjects(res); len(objects) != 2 || res.Patches[0].ID != "pair2" || res.Patches[1].ID != "pair2" {
		t.Fatalf("unpatch of the newest removed %+v", res.Patches)
	}
	now = len(tg.Output())
	expectAll(t, tg, now, 2, "compute=2 message=other ")
	expectAll(t, tg, now, 2, "lib=2 ")
	unpatch(t, tg.Pid, "")
	if after := anonMaps(t, tg.Pid); after != before {
		t.Errorf("%d anonymous mappings before, %d after", before, after)
	}
}

// When one object's part of an id has a patch stacked on it, nothing of
// the id is removed.
func TestUnpatchOfAnIDIsAllOrNothing(t *testing.T) {
	t.Parallel()
	app, lib := fixture(t, true)
	tg := startApp(t, app, "2")
	exe := patchertest.Build(t, patchertest.Spec{ID: "pair", Level: 1, Target: app,
		Source: `const char *message_hp(void) { return "pair"; }`, Replace: map[string]string{"message": "message_hp"}})
	so := patchertest.Build(t, patchertest.Spec{ID: "pair", Level: 1, Target: lib, Flags: []string{"-fPIC"},
		Source: `int lib_value_hp(int x) { return x * 2 + 100; }`, Replace: map[string]string{"lib_value": "lib_value_hp"}})
	top := patchertest.Build(t, patchertest.Spec{ID: "top", Level: 1, Target: lib, Flags: []string{"-fPIC"},
		Source: `int lib_value_top(int x) { return x * 2 + 500; }`, Replace: map[string]string{"lib_value": "lib_value_top"}})
	apply(t, tg.Pid, exe, so)
	apply(t, tg.Pid, top)
	off := expectAll(t, tg, len(tg.Output()), 2, "message=pair ")
	expectAll(t, tg, off, 2, "lib=502 ")
	_, err := Unpatch(tg.Pid, "pair", testOpts)
	if !errors.Is(err, ErrDependency) || !strings.Contains(err.Error(), "top") || !strings.Contains(err.Error(), "lib_value") {
		t.Fatalf("unpatch of an id with a patch stacked on its library part: %v", err)
	}
	// Nothing moved: the executable's part is still applied.
	expectAll(t, tg, len(tg.Output()), 2, "message=pair ")
	if ids := appliedIDs(t, tg.Pid); strings.Join(ids, ",") != "pair,pair,top" {
		t.Fatalf("after the refused unpatch, applied: %v", ids)
	}
}

func removedObjects(res *Result) []string {
	var out []string
	for _, p := range res.Patches {
		if p.Status == StatusRemoved {
			out = append(out, p.Object)
		}
	}
	return out
}

func appliedIDs(t *testing.T, pid int) []string {
	t.Helper()
	info, err := Info(pid)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range info.Objects {
		for _, p := range o.Patches {
			ids = append(ids, p.ID)
		}
	}
	sort.Strings(ids)
	return ids
}
