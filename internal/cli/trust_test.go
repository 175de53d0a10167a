package cli

import (
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// smallPatch writes a valid patch file into dir.
func smallPatch(t *testing.T, dir string) string {
	t.Helper()
	p := &patchfile.Patch{
		Arch: elf.EM_X86_64, BuildID: []byte{0xab, 0xcd}, Target: "/bin/x", ID: "CLI-1", Level: 1,
		Sections: []patchfile.Section{{Name: ".hotpatch.text", Kind: patchfile.SectionText, Align: 16, Size: 1, Data: []byte{0xc3}}},
		Symbols:  []patchfile.Symbol{{}, {Name: "f.hotpatch", Kind: patchfile.SymPatch, Type: elf.STT_FUNC, Size: 1}},
		Funcs:    []patchfile.Func{{Name: "f", OldOffset: 0x1000, OldSize: 16, NewSymbol: 1, NewSize: 1}},
	}
	path := filepath.Join(dir, p.FileName())
	if err := patchfile.WriteFile(path, p); err != nil {
		t.Fatal(err)
	}
	return path
}

type inspectSigs struct {
	Signatures []struct {
		KeyID  string `json:"key_id"`
		Status string `json:"status"`
	} `json:"signatures"`
}

func inspectSignatures(t *testing.T, args ...string) inspectSigs {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"inspect", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s", code, errOut)
	}
	var d inspectSigs
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	return d
}

// TestKeygenSignInspect: a key made by keygen signs a patch; inspect calls
// the signature verified against a directory holding the public key,
// untrusted against an empty one, and a junk signature invalid.
func TestKeygenSignInspect(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	patch := smallPatch(t, dir)
	prefix := filepath.Join(dir, "rel")
	code, out, errOut := runCLI(t, "keygen", prefix)
	if code != 0 || !strings.HasPrefix(out, "key ") {
		t.Fatalf("keygen exited %d: %s %s", code, out, errOut)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	if code, _, errOut := runCLI(t, "keygen", prefix); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("keygen over an existing key: exit %d, %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "sign", "--key", prefix+".key", patch); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("sign exited %d: %s %s", code, out, errOut)
	}
	keys := filepath.Join(dir, "keys")
	os.Mkdir(keys, 0o755)
	noConfig := filepath.Join(dir, "no-config")
	d := inspectSignatures(t, "--config", noConfig, "--trusted-keys", keys, patch)
	if len(d.Signatures) != 1 || d.Signatures[0].Status != "untrusted" || d.Signatures[0].KeyID != id {
		t.Fatalf("against no trusted key: %+v", d)
	}
	pub, _ := os.ReadFile(prefix + ".pub")
	os.WriteFile(filepath.Join(keys, "rel.pub"), pub, 0o644)
	d = inspectSignatures(t, "--config", noConfig, "--trusted-keys", keys, patch)
	if len(d.Signatures) != 1 || d.Signatures[0].Status != "verified" {
		t.Fatalf("against its key: %+v", d)
	}
	// A junk signature under the trusted key's id.
	b, _ := os.ReadFile(patch)
	junk, err := patchfile.AppendSignature(b, patchfile.Signature{Algorithm: patchfile.SigEd25519, KeyID: id, Sig: make([]byte, 64)})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(patch, junk, 0o644)
	d = inspectSignatures(t, "--config", noConfig, "--trusted-keys", keys, patch)
	if len(d.Signatures) != 2 || d.Signatures[1].Status != "invalid" {
		t.Fatalf("junk signature: %+v", d)
	}
	code, out, _ = runCLI(t, "inspect", "--config", noConfig, "--trusted-keys", keys, patch)
	if code != 0 || !strings.Contains(out, "verified") || !strings.Contains(out, "invalid: ") {
		t.Fatalf("inspect text exited %d:\n%s", code, out)
	}
}

func TestTrustFlagsFollowTheContract(t *testing.T) {
	for verb, flags := range map[string][]string{
		"patch":   {"--exe", "--dry-run", "--require-signature", "--trusted-keys", "--timeout"},
		"unpatch": {"--exe", "--dry-run", "--timeout"},
		"info":    {"--exe"},
		"inspect": {"--trusted-keys"},
		"sign":    {"--key"},
		"keygen":  {"PREFIX"},
	} {
		code, out, errOut := runCLI(t, verb, "--help")
		if code != 0 {
			t.Fatalf("%s --help exited %d: %s", verb, code, errOut)
		}
		for _, f := range flags {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help lacks %q", verb, f)
			}
		}
	}
}

func TestPatchRefusesBadConfigBeforeAnything(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("require_signatures = yes\n"), 0o600)
	code, _, errOut := runCLI(t, "patch", "--config", cfg, "-p", "1", smallPatch(t, dir))
	if code == 0 || !strings.Contains(errOut, cfg+" line 1") || !strings.Contains(errOut, "unknown key") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
}
