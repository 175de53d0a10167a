package patcher

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func startTiny(t *testing.T) (string, *ptracetest.Target) {
	t.Helper()
	testutil.RequirePtrace(t)
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/tiny", Flags: []string{"-O2", "-g"}})
	tg := ptracetest.Start(t, exe)
	tg.WaitFor(t, 0, "t0 tiny=", 10*time.Second)
	return exe, tg
}

// Functions of 3 and 4 bytes followed at once by another function get a
// short jump to a trampoline in nearby padding; stacking a second patch
// on them and removing both restores every byte.
func TestShortFunctionsGoThroughATrampoline(t *testing.T) {
	t.Parallel()
	exe, tg := startTiny(t)
	origTiny, origFour := readCode(t, tg.Pid, exe, "tiny"), readCode(t, tg.Pid, exe, "four")
	first := patchertest.Build(t, patchertest.Spec{ID: "short", Level: 1, Target: exe,
		Source:  `int tiny_hp(void) { return 7; } int four_hp(int x) { return x + 40; }`,
		Replace: map[string]string{"tiny": "tiny_hp", "four": "four_hp"}})
	second := patchertest.Build(t, patchertest.Spec{ID: "short2", Level: 1, Target: exe,
		Source: `int tiny_hp2(void) { return 8; }`, Replace: map[string]string{"tiny": "tiny_hp2"}})
	before := snapshotText(t, tg.Pid, exe)

	apply(t, tg.Pid, first)
	off := expectAll(t, tg, len(tg.Output()), 1, "tiny=7 next=1 four=41 fnext=3 walled=0")
	for name, code := range map[string][]byte{"tiny": readCode(t, tg.Pid, exe, "tiny"), "four": readCode(t, tg.Pid, exe, "four")} {
		if code[0] != 0xeb {
			t.Errorf("%s starts % x, want a short jump", name, code)
		}
	}
	if got := readCode(t, tg.Pid, exe, "tiny_next"); got[0] != 0xb8 {
		t.Errorf("tiny_next was overwritten: % x", got)
	}
	apply(t, tg.Pid, second)
	off = expectAll(t, tg, off, 1, "tiny=8 next=1 four=41 ")
	unpatch(t, tg.Pid, "")
	off = expectAll(t, tg, off, 1, "tiny=7 next=1 four=41 ")
	unpatch(t, tg.Pid, "")
	expectAll(t, tg, off, 1, "tiny=0 next=1 four=2 fnext=3 walled=0")
	if !bytes.Equal(readCode(t, tg.Pid, exe, "tiny"), origTiny) || !bytes.Equal(readCode(t, tg.Pid, exe, "four"), origFour) {
		t.Error("the entries were not restored")
	}
	if after := snapshotText(t, tg.Pid, exe); !bytes.Equal(after, before) {
		t.Error("the code around the functions (trampoline padding) was not restored")
	}
}

// With no padding within short-jump reach, the patch is refused, naming
// the function, and nothing is left applied.
func TestWalledInShortFunctionIsRefused(t *testing.T) {
	t.Parallel()
	exe, tg := startTiny(t)
	p := patchertest.Build(t, patchertest.Spec{ID: "walled", Level: 1, Target: exe,
		Source: `int walled_hp(void) { return 9; }`, Replace: map[string]string{"walled": "walled_hp"}})
	_, err := Apply(tg.Pid, []*patchfile.Patch{p}, testOpts)
	if !errors.Is(err, ErrTooShort) || !errors.Is(err, arch.ErrNoRoom) || !strings.Contains(err.Error(), "walled") || !strings.Contains(err.Error(), "wall_b") {
		t.Fatalf("patch of a walled-in 3-byte function: %v", err)
	}
	if regions, _ := FindRegions(tg.Pid, mustMaps(t, tg.Pid)); len(regions) != 0 {
		t.Fatalf("a refused patch left %d regions", len(regions))
	}
}

// snapshotText reads the code from tiny to the end of wall_b.
func snapshotText(t *testing.T, pid int, exe string) []byte {
	t.Helper()
	p, err := Inspect(pid)
	if err != nil {
		t.Fatal(err)
	}
	o := p.Objects[0]
	lo, err := o.File.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	hi, err := o.File.Lookup("wall_b")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, hi.Value+hi.Size-lo.Value)
	if err := proc.ReadMem(pid, o.Bias+lo.Value, b); err != nil {
		t.Fatal(err)
	}
	return b
}
