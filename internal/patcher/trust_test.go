package patcher_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/trust"
)

// turns is the fixture of the trust and concurrency tests: alpha returns
// 1 and beta 2 until patched; each line on stdin makes it print both.
type turns struct {
	*testutil.Process
	app string
}

func startTurns(t *testing.T, name string) *turns {
	t.Helper()
	app := testutil.BuildFixture(t, testutil.Build{Dir: "testdata/turns", Name: name, Flags: []string{"-O2", "-g", "-pthread"}})
	p := testutil.Start(t, app)
	p.WaitFor(t, 0, "ready\n", 10*time.Second)
	return &turns{Process: p, app: app}
}

// ask returns what alpha and beta return now.
func (tg *turns) ask(t *testing.T) (int, int) {
	t.Helper()
	from := len(tg.Output())
	if _, err := tg.Stdin.Write([]byte("q\n")); err != nil {
		t.Fatalf("ask pid %d: %v", tg.Pid, err)
	}
	start := tg.WaitFor(t, from, "alpha=", 10*time.Second)
	end := tg.WaitFor(t, start, "\n", 10*time.Second)
	var a, b int
	if _, err := fmt.Sscanf("alpha="+tg.Output()[start:end], "alpha=%d beta=%d\n", &a, &b); err != nil {
		t.Fatalf("pid %d answered %q: %v", tg.Pid, tg.Output()[start:end], err)
	}
	return a, b
}

// writePatchFile builds a patch replacing fn of app with one returning
// ret, and writes it into dir.
func writePatchFile(t *testing.T, dir, app, id, fn string, ret int) string {
	t.Helper()
	p := patchertest.Build(t, patchertest.Spec{ID: id, Level: 1, Target: app,
		Source: fmt.Sprintf("int %s_hp(void) { return %d; }", fn, ret), Replace: map[string]string{fn: fn + "_hp"}})
	path := filepath.Join(dir, id+".hpatch")
	if err := patchfile.WriteFile(path, p); err != nil {
		t.Fatal(err)
	}
	return path
}

// privateDir is a fresh directory only its owner may write, as the file
// checks want a patch directory to be.
func privateDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

type infoDoc struct {
	Processes []struct {
		Pid     int `json:"pid"`
		Objects []struct {
			Path    string       `json:"path"`
			Patches []regionInfo `json:"patches"`
		} `json:"objects"`
		Orphans []regionInfo `json:"orphans"`
	} `json:"processes"`
}

type regionInfo struct {
	ID     string `json:"id"`
	Active bool   `json:"active"`
	State  string `json:"state"`
	Region uint64 `json:"region"`
	Size   uint64 `json:"size"`
}

// info runs hotpatch info -p pid --json and returns every region it lists.
func info(t *testing.T, tool string, pid int) []regionInfo {
	t.Helper()
	code, out, errOut := runTool(t, tool, "info", "-p", strconv.Itoa(pid), "--json")
	if code != 0 {
		t.Fatalf("info -p %d exited %d: %s", pid, code, errOut)
	}
	var doc infoDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	var rs []regionInfo
	for _, p := range doc.Processes {
		for _, o := range p.Objects {
			rs = append(rs, o.Patches...)
		}
		rs = append(rs, p.Orphans...)
	}
	return rs
}

// snapshot is what the tests compare to say a process was not touched:
// its mappings, and the regions found in it.
func snapshot(t *testing.T, pid int) string {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	regions, err := patcher.FindRegions(pid, maps)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range maps {
		fmt.Fprintf(&b, "%x-%x %s %s\n", m.Start, m.End, m.Perms, m.Path)
	}
	fmt.Fprintf(&b, "%d regions\n", len(regions))
	return b.String()
}

// TestSignaturePolicyThroughCommandLine signs a patch and has the patch
// command, with signatures required by the host configuration, refuse
// every patch that is not signed by a trusted key, naming the file and the
// key, before it touches the target; then apply the signed one.
func TestSignaturePolicyThroughCommandLine(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	t.Parallel()
	tool := hotpatchTool(t)
	tg := startTurns(t, "turns-sign")
	dir := privateDir(t)
	patch := writePatchFile(t, dir, tg.app, "SIGNED-1", "alpha", 10)
	keys := filepath.Join(dir, "trusted")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("# as in /etc/hotpatch/config\nrequire_signature = true\ntrusted_keys = "+keys+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runTool(t, tool, "keygen", filepath.Join(dir, "release"))
	if code != 0 {
		t.Fatalf("keygen exited %d: %s", code, errOut)
	}
	keyID := strings.TrimSuffix(strings.Fields(out)[1], ":")
	code, _, _ = runTool(t, tool, "keygen", filepath.Join(dir, "stranger"))
	if code != 0 {
		t.Fatal("keygen stranger failed")
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "release.pub"))
	trustedPub := filepath.Join(keys, "release.pub")
	if err := os.WriteFile(trustedPub, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(tg.Pid)
	before := snapshot(t, tg.Pid)
	refused := func(what, file, want string) {
		t.Helper()
		code, _, errOut := runTool(t, tool, "patch", "--config", cfg, "-p", pid, file)
		if code == 0 || !strings.Contains(errOut, file) || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("%s: exit %d, stderr %q; want a one-line refusal naming %s and %q", what, code, errOut, file, want)
		}
		if after := snapshot(t, tg.Pid); after != before {
			t.Fatalf("%s: the target changed:\n%s\nbecame\n%s", what, before, after)
		}
		if a, _ := tg.ask(t); a != 1 {
			t.Fatalf("%s: alpha returns %d", what, a)
		}
	}
	copyTo := func(name string) string {
		b, _ := os.ReadFile(patch)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	refused("unsigned", patch, "not signed")
	// --require-signature on the command line alone does the same.
	if code, _, errOut := runTool(t, tool, "patch", "--config", filepath.Join(dir, "none"), "--require-signature", "--trusted-keys", keys, "-p", pid, patch); code == 0 || !strings.Contains(errOut, "not signed") {
		t.Fatalf("--require-signature: exit %d, %s", code, errOut)
	}

	untrusted := copyTo("untrusted.hpatch")
	if code, _, errOut := runTool(t, tool, "sign", "--key", filepath.Join(dir, "stranger.key"), untrusted); code != 0 {
		t.Fatalf("sign: %s", errOut)
	}
	strangerID := trustKeyID(t, filepath.Join(dir, "stranger.pub"))
	refused("untrusted", untrusted, strangerID)

	// A signature made by another key under the trusted key's id.
	wrong := copyTo("wrong-key.hpatch")
	forgeSignature(t, wrong, filepath.Join(dir, "stranger.key"), keyID)
	refused("wrong key", wrong, keyID)

	// Code bytes changed after signing, checksum recomputed.
	tampered := copyTo("tampered.hpatch")
	if code, _, errOut := runTool(t, tool, "sign", "--key", filepath.Join(dir, "release.key"), tampered); code != 0 {
		t.Fatalf("sign: %s", errOut)
	}
	tamper(t, tampered)
	refused("tampered", tampered, keyID)

	if code, out, errOut := runTool(t, tool, "sign", "--key", filepath.Join(dir, "release.key"), patch); code != 0 || !strings.Contains(out, keyID) {
		t.Fatalf("sign exited %d: %s %s", code, out, errOut)
	}
	code, out, _ = runTool(t, tool, "inspect", "--config", cfg, patch)
	if code != 0 || !strings.Contains(out, "key "+keyID) || !strings.Contains(out, "verified") {
		t.Fatalf("inspect of the signed patch exited %d:\n%s", code, out)
	}
	code, out, _ = runTool(t, tool, "inspect", "--json", "--config", cfg, tampered)
	if code != 0 || !strings.Contains(out, `"status": "invalid"`) {
		t.Fatalf("inspect of the tampered patch exited %d:\n%s", code, out)
	}
	code, out, _ = runTool(t, tool, "inspect", "--config", cfg, untrusted)
	if code != 0 || !strings.Contains(out, "untrusted") {
		t.Fatalf("inspect of the untrusted patch exited %d:\n%s", code, out)
	}

	// Revoked: the key's file removed from the trusted directory.
	if err := os.Rename(trustedPub, filepath.Join(dir, "revoked.pub")); err != nil {
		t.Fatal(err)
	}
	refused("revoked", patch, keyID)
	if err := os.Rename(filepath.Join(dir, "revoked.pub"), trustedPub); err != nil {
		t.Fatal(err)
	}

	code, out, errOut = runTool(t, tool, "patch", "--config", cfg, "-p", pid, patch)
	if code != 0 || !strings.Contains(out, "SIGNED-1") {
		t.Fatalf("signed patch: exit %d: %s %s", code, out, errOut)
	}
	if a, _ := tg.ask(t); a != 10 {
		t.Fatalf("signed patch applied but alpha returns %d", a)
	}
	if code, _, errOut := runTool(t, tool, "unpatch", "-p", pid); code != 0 {
		t.Fatalf("unpatch: %s", errOut)
	}
}

func trustKeyID(t *testing.T, pubPath string) string {
	t.Helper()
	b, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := trust.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return trust.KeyID(pub)
}

// forgeSignature appends a signature by the key at keyPath that claims to
// be by the key with id claimed.
func forgeSignature(t *testing.T, path, keyPath, claimed string) {
	t.Helper()
	priv, err := trust.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	p, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patchfile.AppendSignature(b, patchfile.Signature{Algorithm: patchfile.SigEd25519, KeyID: claimed, Sig: signWith(priv, p.SignedData())})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tamper changes the first byte of the patch code and recomputes the
// checksum, as someone who can write the file would.
func tamper(t *testing.T, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	p, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	sigs := p.Signatures
	p.Signatures = nil
	p.Sections[0].Data[0] ^= 0xff
	p.Signatures = sigs
	out, err := patchfile.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patchfile.Decode(out); err != nil {
		t.Fatalf("the tampered file must pass its checksum: %v", err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUnsafePatchFilesRefused has root refuse patch files that another
// user could have written, with the path and the fix, before it touches
// the target.
func TestUnsafePatchFilesRefused(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	testutil.RequireRoot(t)
	t.Parallel()
	tool := hotpatchTool(t)
	tg := startTurns(t, "turns-files")
	pid := strconv.Itoa(tg.Pid)
	before := snapshot(t, tg.Pid)
	none := filepath.Join(t.TempDir(), "no-config")
	for _, tc := range []struct {
		name string
		bad  func(file string) string
		fix  string
	}{
		{"world-writable", func(f string) string { os.Chmod(f, 0o666); return f }, "chmod go-w"},
		{"group-writable", func(f string) string { os.Chmod(f, 0o664); return f }, "chmod go-w"},
		{"foreign-owned", func(f string) string { os.Chown(f, 4242, 4242); return f }, "chown root"},
		{"writable directory", func(f string) string { os.Chmod(filepath.Dir(f), 0o777); return filepath.Dir(f) }, "chmod go-w"},
	} {
		dir := privateDir(t)
		file := writePatchFile(t, dir, tg.app, "FILES-1", "alpha", 10)
		bad := tc.bad(file)
		code, _, errOut := runTool(t, tool, "patch", "--config", none, "-p", pid, file)
		if code == 0 || !strings.Contains(errOut, bad) || !strings.Contains(errOut, tc.fix+" "+bad) {
			t.Fatalf("%s: exit %d, stderr %q; want a refusal naming %s with %q", tc.name, code, errOut, bad, tc.fix)
		}
		if after := snapshot(t, tg.Pid); after != before {
			t.Fatalf("%s: the target changed", tc.name)
		}
	}
}

// TestConcurrentOperationsTakeTurns runs pairs of hotpatch commands on one
// process at the same time: two patches of the same patch, and a patch with
// an unpatch of another. Every command succeeds, in turn, whichever goes
// first, and info always says what the program does.
func TestConcurrentOperationsTakeTurns(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	t.Parallel()
	pairs := 50
	if testing.Short() {
		pairs = 10
	}
	tool := hotpatchTool(t)
	tg := startTurns(t, "turns-concurrent")
	dir := privateDir(t)
	pa := writePatchFile(t, dir, tg.app, "A", "alpha", 10)
	pb := writePatchFile(t, dir, tg.app, "B", "beta", 20)
	pid := strconv.Itoa(tg.Pid)
	none := filepath.Join(t.TempDir(), "no-config")

	type run struct {
		code        int
		out, errOut string
	}
	together := func(a, b []string) [2]run {
		var res [2]run
		done := make(chan int, 2)
		for i, args := range [][]string{a, b} {
			go func() {
				code, out, errOut := runTool(t, tool, args...)
				res[i] = run{code, out, errOut}
				done <- i
			}()
		}
		<-done
		<-done
		return res
	}
	expect := func(what string, wantA, wantB bool) {
		t.Helper()
		got := map[string]bool{}
		for _, r := range info(t, tool, tg.Pid) {
			if r.State != "active" {
				t.Fatalf("%s: info lists patch %s in state %s", what, r.ID, r.State)
			}
			if got[r.ID] {
				t.Fatalf("%s: info lists patch %s twice", what, r.ID)
			}
			got[r.ID] = true
		}
		if got["A"] != wantA || got["B"] != wantB || len(got) != btoi(wantA)+btoi(wantB) {
			t.Fatalf("%s: info lists %v, want A=%v B=%v", what, got, wantA, wantB)
		}
		a, b := tg.ask(t)
		if (a == 10) != wantA || (b == 20) != wantB {
			t.Fatalf("%s: the program answers alpha=%d beta=%d, info says A=%v B=%v", what, a, b, wantA, wantB)
		}
	}
	patchArgs := func(file string) []string {
		return []string{"patch", "--config", none, "--timeout", "60s", "-p", pid, file}
	}
	for i := 0; i < pairs; i++ {
		res := together(patchArgs(pa), patchArgs(pa))
		applied := 0
		for _, r := range res {
			if r.code != 0 {
				t.Fatalf("patch/patch pair %d: exit %d: %s", i, r.code, r.errOut)
			}
			if strings.Contains(r.out, "applied A") {
				applied++
			}
		}
		if applied != 1 {
			t.Fatalf("patch/patch pair %d: %d runs applied the patch, want 1:\n%s\n%s", i, applied, res[0].out, res[1].out)
		}
		expect(fmt.Sprintf("patch/patch pair %d", i), true, false)
		if code, _, errOut := runTool(t, tool, "unpatch", "-p", pid, "-i", "A"); code != 0 {
			t.Fatalf("unpatch after pair %d: %s", i, errOut)
		}
	}
	// Patch/unpatch pairs: A is applied; B goes on while A comes off,
	// then the other way round.
	if code, _, errOut := runTool(t, tool, patchArgs(pa)...); code != 0 {
		t.Fatal(errOut)
	}
	have, want := "A", "B"
	for i := 0; i < pairs; i++ {
		file := map[string]string{"A": pa, "B": pb}[want]
		res := together(patchArgs(file), []string{"unpatch", "--timeout", "60s", "-p", pid, "-i", have})
		for _, r := range res {
			if r.code != 0 {
				t.Fatalf("patch/unpatch pair %d: exit %d: %s", i, r.code, r.errOut)
			}
		}
		expect(fmt.Sprintf("patch/unpatch pair %d", i), want == "A", want == "B")
		have, want = want, have
	}
	if done, err := tg.Exited(); done {
		t.Fatalf("target died: %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLockNamesTheOtherHotpatch holds the lock of a process and has a
// hotpatch command give up on it, naming the holder, with the target
// untouched.
func TestLockNamesTheOtherHotpatch(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireGCC(t)
	t.Parallel()
	tool := hotpatchTool(t)
	tg := startTurns(t, "turns-lock")
	dir := privateDir(t)
	pa := writePatchFile(t, dir, tg.app, "A", "alpha", 10)
	unlock, err := patcher.LockProcess(tg.Pid, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, tg.Pid)
	code, _, errOut := runTool(t, tool, "patch", "--config", filepath.Join(dir, "none"), "--timeout", "300ms", "-p", strconv.Itoa(tg.Pid), pa)
	if code == 0 || !strings.Contains(errOut, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(errOut, "another hotpatch") {
		t.Fatalf("patch on a locked process: exit %d, %q; want a refusal naming pid %d", code, errOut, os.Getpid())
	}
	if after := snapshot(t, tg.Pid); after != before {
		t.Fatal("the target changed")
	}
	// Within the timeout, a waiter gets the lock once it is released.
	go func() {
		time.Sleep(200 * time.Millisecond)
		unlock()
	}()
	code, _, errOut = runTool(t, tool, "patch", "--config", filepath.Join(dir, "none"), "--timeout", "30s", "-p", strconv.Itoa(tg.Pid), pa)
	if code != 0 {
		t.Fatalf("patch after the lock was released: %s", errOut)
	}
	if a, _ := tg.ask(t); a != 10 {
		t.Fatalf("alpha returns %d after the patch", a)
	}
}

func signWith(priv ed25519.PrivateKey, msg []byte) []byte { return ed25519.Sign(priv, msg) }
