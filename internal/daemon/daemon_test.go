package daemon

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n < 20; n++ {
		b := backoff(n)
		if b < prev {
			t.Fatalf("backoff(%d) = %v, less than backoff(%d) = %v", n, b, n-1, prev)
		}
		if b > 30*time.Second {
			t.Fatalf("backoff(%d) = %v, above the 30 s cap", n, b)
		}
		prev = b
	}
	if backoff(1) != 250*time.Millisecond || backoff(3) != time.Second || backoff(20) != 30*time.Second {
		t.Errorf("backoff 1, 3, 20 = %v, %v, %v", backoff(1), backoff(3), backoff(20))
	}
}

func testPatch(file, buildID, id string, level uint32, target string) *storePatch {
	return &storePatch{file: file, buildID: buildID, patch: &patchfile.Patch{ID: id, Level: level, Target: target}}
}

func TestResolveLevelsRejectsLowerLevels(t *testing.T) {
	d := &Daemon{patches: map[string]*storePatch{
		"a.hpatch": testPatch("a.hpatch", "b1", "fix", 1, "prog"),
		"b.hpatch": testPatch("b.hpatch", "b1", "fix", 3, "prog"),
		"c.hpatch": testPatch("c.hpatch", "b2", "fix", 1, "libx.so.1"),
		"d.hpatch": testPatch("d.hpatch", "b1", "other", 1, "prog"),
	}}
	d.resolveLevels()
	var active []string
	for name, sp := range d.patches {
		if sp.active() {
			active = append(active, name)
		}
	}
	sort.Strings(active)
	if want := []string{"b.hpatch", "c.hpatch", "d.hpatch"}; !reflect.DeepEqual(active, want) {
		t.Fatalf("active = %v, want %v", active, want)
	}
	if r := d.patches["a.hpatch"].reason; !strings.Contains(r, "level 3") || !strings.Contains(r, "b.hpatch") {
		t.Errorf("reason for the lower level: %q", r)
	}
	// The higher level removed: the lower one is the desired state again.
	delete(d.patches, "b.hpatch")
	d.resolveLevels()
	if !d.patches["a.hpatch"].active() {
		t.Errorf("a.hpatch still rejected after the higher level left: %q", d.patches["a.hpatch"].reason)
	}
}

func TestPlan(t *testing.T) {
	d := &Daemon{patches: map[string]*storePatch{
		"exe.hpatch":  testPatch("exe.hpatch", "e1", "fix", 2, "prog"),
		"lib.hpatch":  testPatch("lib.hpatch", "l1", "libfix", 1, "libx.so.1"),
		"gone.hpatch": testPatch("gone.hpatch", "zz", "nothere", 1, "other"),
	}}
	now := time.Now()
	st := &procState{pid: 42, objects: map[string]string{"e1": "/usr/bin/prog", "l1": "/usr/lib/libx.so.1"},
		regions: []regionView{
			{id: "fix", buildID: "e1", level: 1, seq: 1},    // lower level: replaced by applying
			{id: "stale", buildID: "e1", level: 1, seq: 2},  // not in the store: removed
			{id: "libfix", buildID: "l1", level: 4, seq: 3}, // higher than the store: removed first
		},
		failed: map[string]*failure{}}
	j := d.plan(st, now)
	if j == nil {
		t.Fatal("no job")
	}
	var removed, applied []string
	for _, r := range j.remove {
		removed = append(removed, r.id)
	}
	for _, sp := range j.apply {
		applied = append(applied, sp.file)
	}
	if want := []string{"libfix", "stale"}; !reflect.DeepEqual(removed, want) {
		t.Errorf("remove %v, want %v (newest first)", removed, want)
	}
	if want := []string{"exe.hpatch", "lib.hpatch"}; !reflect.DeepEqual(applied, want) {
		t.Errorf("apply %v, want %v", applied, want)
	}

	// A failure waits for its back-off; a success clears it.
	st.regions = []regionView{{id: "fix", buildID: "e1", level: 2, seq: 4}}
	st.failed["lib.hpatch"] = &failure{attempts: 1, next: now.Add(time.Minute)}
	if j := d.plan(st, now); j != nil {
		t.Errorf("job %+v while the only missing patch waits for its retry", j)
	}
	if j := d.plan(st, now.Add(2*time.Minute)); j == nil || len(j.apply) != 1 || j.apply[0].file != "lib.hpatch" {
		t.Errorf("after the back-off: job %+v, want lib.hpatch applied", j)
	}
	st.regions = append(st.regions, regionView{id: "libfix", buildID: "l1", level: 1, seq: 5})
	if j := d.plan(st, now.Add(2*time.Minute)); j != nil {
		t.Errorf("job %+v for a process in its desired state", j)
	}
	if _, ok := st.failed["lib.hpatch"]; ok {
		t.Error("the failure of an applied patch is still recorded")
	}
}

func TestNeedsPatches(t *testing.T) {
	d := &Daemon{patches: map[string]*storePatch{
		"exe.hpatch": testPatch("exe.hpatch", "e1", "fix", 1, "prog"),
		"lib.hpatch": testPatch("lib.hpatch", "l1", "libfix", 1, "libgreet.so.1.2"),
	}}
	for _, c := range []struct {
		ef   execFile
		want bool
	}{
		{execFile{buildID: "e1"}, true},
		{execFile{buildID: "e2", needed: []string{"libc.so.6", "libgreet.so.1"}}, true},
		{execFile{buildID: "e2", needed: []string{"libc.so.6", "libgreeting.so.1"}}, false},
		{execFile{buildID: "e2"}, false},
	} {
		if got := d.needsPatches(&c.ef); got != c.want {
			t.Errorf("needsPatches(%+v) = %v, want %v", c.ef, got, c.want)
		}
	}
	d.patches["lib.hpatch"].reason = "superseded"
	if d.needsPatches(&execFile{needed: []string{"libgreet.so.1"}}) {
		t.Error("a rejected patch made a program need patches")
	}
}

// TestStatusDocumentShape pins the field names of the status contract.
func TestStatusDocumentShape(t *testing.T) {
	s := Status{Daemon: DaemonInfo{Pid: 1}, Patches: []PatchStatus{{
		File: "x.hpatch", State: "active",
		Applied: []Applied{{Pid: 42}}, Failed: []Failed{{Pid: 43}}, Pending: []Pending{{Pid: 44}},
	}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) []string {
		var out []string
		for k := range v.(map[string]any) {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	p := doc["patches"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"top", keys(doc), []string{"daemon", "patches"}},
		{"daemon", keys(doc["daemon"]), []string{"pid", "socket", "started", "store", "version"}},
		{"patch", keys(p), []string{"applied", "build_id", "failed", "file", "id", "level", "pending", "signature", "state"}},
		{"applied", keys(p["applied"].([]any)[0]), []string{"at", "exe", "object", "pause_us", "pid"}},
		{"failed", keys(p["failed"].([]any)[0]), []string{"attempts", "error", "exe", "next_retry", "pid"}},
		{"pending", keys(p["pending"].([]any)[0]), []string{"exe", "pid"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s keys %v, want %v", c.name, c.got, c.want)
		}
	}
	s.Patches[0].State, s.Patches[0].Reason = "rejected", "bad checksum"
	b, _ = json.Marshal(s.Patches[0])
	if !strings.Contains(string(b), `"reason":"bad checksum"`) {
		t.Errorf("a rejected patch has no reason: %s", b)
	}
}

// TestScopeTree: with a tree, the daemon's scope is the tree and nothing
// else, read from the real /proc.
func TestScopeTree(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatalf("start a child: %v", err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	self := os.Getpid()
	s := newScope(self, -1)
	id, err := proc.ReadIdentity(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !s.contains(child.Process.Pid, id) {
		t.Errorf("child %d of the tree %d is out of scope", child.Process.Pid, self)
	}
	ppid := os.Getppid()
	pid, err := proc.ReadIdentity(ppid)
	if err != nil {
		t.Fatal(err)
	}
	if s.contains(ppid, pid) {
		t.Errorf("the tree's parent %d is in scope", ppid)
	}
	if newScope(0, self).contains(self, proc.Identity{}) {
		t.Error("the daemon itself is in scope")
	}
	d := &Daemon{opt: Options{Tree: self}}
	pids, err := d.candidates()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pids {
		found = found || p == child.Process.Pid
		if p == ppid {
			t.Errorf("candidates of the tree %d include its parent %d", self, ppid)
		}
	}
	if !found {
		t.Errorf("candidates %v miss the child %d", pids, child.Process.Pid)
	}
}

// TestScanStore: files come and go, a damaged one is rejected with a
// one-line reason, a rewritten one is read again.
func TestScanStore(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Options{Store: dir, Socket: filepath.Join(dir, "s.sock")})
	if err != nil {
		t.Fatal(err)
	}
	good := &patchfile.Patch{Arch: elf.EM_X86_64, BuildID: []byte{1, 2, 3, 4}, Target: "prog", ID: "fix", Level: 1,
		Symbols: []patchfile.Symbol{{}}}
	b, err := patchfile.Encode(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.hpatch", b)
	write("bad.hpatch", []byte("not a patch"))
	write(".hidden.hpatch", []byte("ignored"))
	write("notes.txt", []byte("ignored"))
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.scanStore() {
		t.Fatal("first scan saw no change")
	}
	if len(d.patches) != 2 {
		t.Fatalf("store files %v, want a.hpatch and bad.hpatch", d.patches)
	}
	if sp := d.patches["a.hpatch"]; !sp.active() || sp.buildID != "01020304" || sp.sig != SignatureNotRequired {
		t.Errorf("a.hpatch: %+v", sp)
	}
	if sp := d.patches["bad.hpatch"]; sp.active() || sp.reason == "" || strings.Contains(sp.reason, "\n") {
		t.Errorf("bad.hpatch: active %v, reason %q", sp.active(), sp.reason)
	}
	if d.active.Load() != 1 {
		t.Errorf("active count %d, want 1", d.active.Load())
	}
	if d.scanStore() {
		t.Error("a scan of an unchanged store saw a change")
	}
	good.Level = 2
	b, _ = patchfile.Encode(good)
	write("a.hpatch", b)
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(filepath.Join(dir, "a.hpatch"), later, later)
	if !d.scanStore() || d.patches["a.hpatch"].patch.Level != 2 {
		t.Error("a rewritten file was not read again")
	}
	_ = os.Remove(filepath.Join(dir, "a.hpatch"))
	_ = os.Remove(filepath.Join(dir, "bad.hpatch"))
	if !d.scanStore() || len(d.patches) != 0 || d.active.Load() != 0 {
		t.Errorf("after removing every file: %d patches, %d active", len(d.patches), d.active.Load())
	}
}
