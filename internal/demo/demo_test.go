package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// TestDemoRunsToCompletion runs the README's main job for real: it builds
// the service, leaks the key, builds and applies the fix, and removes it.
func TestDemoRunsToCompletion(t *testing.T) {
	testutil.RequireGCC(t)
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "make", "patch")
	bin := testutil.HotpatchBinary(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	res, err := Run(ctx, Options{Hotpatch: bin, Dir: dir, Keep: true, Out: &out})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	if !strings.Contains(res.LeakBefore, "SECRET-KEY") {
		t.Errorf("the crafted request did not leak the key before the patch: %q", res.LeakBefore)
	}
	if res.ReplyPatched != "ERR length exceeds payload" {
		t.Errorf("patched reply %q", res.ReplyPatched)
	}
	if !strings.Contains(res.ReplyUnpatched, "SECRET-KEY") {
		t.Errorf("after unpatch the original code did not come back: %q", res.ReplyUnpatched)
	}
	if res.ClientFailures != 0 || res.ClientRequests == 0 {
		t.Errorf("background client: %d requests, %d failures", res.ClientRequests, res.ClientFailures)
	}
	if res.ServiceStderr != "" {
		t.Errorf("the service complained (EINTR?): %s", res.ServiceStderr)
	}
	if res.PauseMicros <= 0 {
		t.Errorf("no pause reported")
	}
	for _, step := range []string{"[1/7]", "[4/7]", "[5/7]", "[7/7]", "Done."} {
		if !strings.Contains(out.String(), step) {
			t.Errorf("narration lacks %s:\n%s", step, out.String())
		}
	}
	// The demo stops the service it started: nothing may keep running.
	if procs, _ := filepath.Glob("/proc/[0-9]*/exe"); len(procs) > 0 {
		for _, p := range procs {
			if target, err := os.Readlink(p); err == nil && target == filepath.Join(dir, "echod") {
				t.Errorf("echod still runs: %s", p)
			}
		}
	}
	// The tree is as the demo unpacked it: the fix was applied and undone.
	data, err := os.ReadFile(filepath.Join(dir, "proto.c"))
	if err != nil || strings.Contains(string(data), "CVE-DEMO-0001") {
		t.Errorf("the source tree was not restored (err %v)", err)
	}
}
