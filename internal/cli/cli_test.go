package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line in-process and returns the exit status and
// both outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"hotpatch"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHelpListsEveryVerb(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, verb := range []string{"build", "cc", "gensrc", "patch", "unpatch", "info", "inspect", "version", "completion"} {
		if !strings.Contains(out, "\n  "+verb+" ") {
			t.Errorf("--help does not list %q:\n%s", verb, out)
		}
	}
}

// TestVerbFlagsFollowTheContract checks each verb's --help for the flags
// that mission.md §4 promises.
func TestVerbFlagsFollowTheContract(t *testing.T) {
	want := map[string][]string{
		"build":   {"-C, --directory", "-o, --output", "--id", "--level", "--description", "-j, --jobs", "--target", "--exact-lines"},
		"gensrc":  {"-o, --output", "--json"},
		"patch":   {"-p, --pid", "--json", "--retries", "--timeout"},
		"unpatch": {"-p, --pid", "-i, --id", "--json"},
		"info":    {"-p, --pid", "--json"},
		"inspect": {"--json"},
	}
	for verb, flags := range want {
		code, out, errOut := runCLI(t, verb, "--help")
		if code != 0 {
			t.Fatalf("%s --help exited %d: %s", verb, code, errOut)
		}
		for _, f := range flags {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help lacks %q:\n%s", verb, f, out)
			}
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"patch", "x.hpatch"},    // -p is required
		{"inspect"},              // FILE is required
		{"gensrc", "only-one.s"}, // two files are required
		{"no-such-verb"},
		{"info", "--bogus"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errOut)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: reason is not one line: %q", args, errOut)
		}
	}
}

func TestInspectTextAndJSON(t *testing.T) {
	sample := filepath.Join("..", "patchfile", "testdata", "sample.hpatch")
	code, out, errOut := runCLI(t, "inspect", sample)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Patch:        CVE-2024-1234",
		"Build-id:     5e1f2a9c00112233445566778899aabbccddeeff",
		"Target:       /usr/sbin/exampled",
		"Level:        2",
		"handle_request  0x1189",
		".hotpatch.bss     rw    4      4 (zero-filled)",
		"puts@GLIBC_2.2.5         external",
		".hotpatch.text+0xc  R_X86_64_PLT32  puts@GLIBC_2.2.5  -4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI(t, "inspect", "--json", sample)
	if code != 0 {
		t.Fatalf("inspect --json exited %d: %s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json is not JSON: %v\n%s", err, out)
	}
	for key, want := range map[string]any{
		"build_id": "5e1f2a9c00112233445566778899aabbccddeeff",
		"target":   "/usr/sbin/exampled",
		"id":       "CVE-2024-1234",
		"level":    2.0,
		"arch":     "x86-64",
	} {
		if doc[key] != want {
			t.Errorf("json %s = %v, want %v", key, doc[key], want)
		}
	}
	funcs, _ := doc["functions"].([]any)
	if len(funcs) != 1 {
		t.Fatalf("json functions = %v", doc["functions"])
	}
	f := funcs[0].(map[string]any)
	for key, want := range map[string]any{"name": "handle_request", "old_offset": 4489.0, "old_size": 90.0, "new_size": 16.0} {
		if f[key] != want {
			t.Errorf("json functions[0].%s = %v, want %v", key, f[key], want)
		}
	}
}

func TestInspectRefusesCorruptFiles(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("..", "patchfile", "testdata", "sample.hpatch"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	flipped := append([]byte(nil), good...)
	flipped[200] ^= 0x04
	cases := map[string]struct {
		data []byte
		want string
	}{
		"flipped":   {flipped, "checksum mismatch"},
		"truncated": {good[:len(good)/2], "truncated"},
		"not patch": {[]byte("hello\n"), "not a hotpatch patch file"},
	}
	for name, c := range cases {
		path := filepath.Join(dir, name+".hpatch")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI(t, "inspect", path)
		if code == 0 {
			t.Errorf("%s: inspect succeeded:\n%s", name, out)
		}
		if !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%s: want one line containing %q, got %q", name, c.want, errOut)
		}
	}
	code, _, errOut := runCLI(t, "inspect", filepath.Join(dir, "missing.hpatch"))
	if code == 0 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
}

func TestCPUProfileFlagWritesAProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	code, out, errOut := runCLI(t, "--cpuprofile", path, "version")
	if code != 0 || !strings.HasPrefix(out, "hotpatch ") {
		t.Fatalf("version with --cpuprofile exited %d: %s %s", code, out, errOut)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// pprof writes a gzip-compressed protocol buffer.
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("%s is not a gzip-compressed profile (%d bytes)", path, len(b))
	}
	if code, _, errOut := runCLI(t, "--cpuprofile", filepath.Join(t.TempDir(), "no", "such", "dir"), "version"); code == 0 || !strings.Contains(errOut, "--cpuprofile") {
		t.Errorf("an unwritable --cpuprofile exited %d: %s", code, errOut)
	}
	code, out, _ = runCLI(t, "--help")
	if code != 0 || strings.Contains(out, "cpuprofile") {
		t.Errorf("--cpuprofile is a hidden flag, yet --help shows it:\n%s", out)
	}
}

func TestObjectCacheDir(t *testing.T) {
	t.Setenv("HOTPATCH_CACHE_DIR", "off")
	if d := objectCacheDir(); d != "" {
		t.Errorf("HOTPATCH_CACHE_DIR=off gives %q, want no cache", d)
	}
	t.Setenv("HOTPATCH_CACHE_DIR", "/some/dir")
	if d := objectCacheDir(); d != "/some/dir" {
		t.Errorf("HOTPATCH_CACHE_DIR=/some/dir gives %q", d)
	}
	os.Unsetenv("HOTPATCH_CACHE_DIR")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d := objectCacheDir(); d != "/xdg/hotpatch/objects" {
		t.Errorf("with XDG_CACHE_HOME=/xdg the cache is %q, want /xdg/hotpatch/objects", d)
	}
}
