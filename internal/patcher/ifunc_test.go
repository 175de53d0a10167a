package patcher

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/ptrace/ptracetest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// Patch code calls ifuncs that no loaded object has a resolved slot for:
// one of a library, one of the program. Their resolvers are called in
// the process, and the patch calls what they chose.
func TestIfuncsWithoutASlotAreResolvedInTheProcess(t *testing.T) {
	t.Parallel()
	testutil.RequirePtrace(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"O2-pie", []string{"-O2", "-g", "-fPIE", "-pie"}},
		{"O0-nopie", []string{"-O0", "-g", "-fno-pie", "-no-pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lib := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/ifunclib", Shared: true, Flags: []string{"-O2", "-g", "-fPIC"}})
			dir := filepath.Dir(lib)
			exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/ifuncs", Name: "ifuncs-" + tc.name, Flags: tc.flags,
				LinkFlags: []string{"-L" + dir, "-lifunclib", "-Wl,-rpath," + dir}})
			tg := ptracetest.Start(t, exe)
			tg.WaitFor(t, 0, "t0 value=1 ", 10*time.Second)
			patchFlags := []string{"-fPIE"}
			if tc.name == "O0-nopie" {
				patchFlags = []string{"-fno-pie"}
			}
			p := patchertest.Build(t, patchertest.Spec{ID: "ifuncs", Level: 1, Target: exe, Flags: patchFlags,
				Source:  `int lib_pick(int); int exe_pick(int); int value_hp(int x) { return lib_pick(x) + exe_pick(x); }`,
				Replace: map[string]string{"value": "value_hp"}})
			apply(t, tg.Pid, p)
			off := expectAll(t, tg, len(tg.Output()), 1, "value=1501 ")
			unpatch(t, tg.Pid, "")
			expectAll(t, tg, off, 1, "value=1 ")
		})
	}
}
