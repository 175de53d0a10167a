package build

import (
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestNeverReturningFunctionsAreNamed(t *testing.T) {
	t.Parallel()
	exe := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/running", Flags: []string{"-O2", "-g"}})
	got := neverReturning(exe, "running", []string{"main", "serve"})
	if len(got) != 1 {
		t.Fatalf("want one warning (main), got %d: %q", len(got), got)
	}
	for _, want := range []string{"running: main changed but never returns", "(work)", "noinline"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("warning lacks %q: %s", want, got[0])
		}
	}
	if got := neverReturning(exe, "running", []string{"serve"}); len(got) != 0 {
		t.Errorf("serve returns, yet: %q", got)
	}
}
