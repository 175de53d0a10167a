package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// writePatch writes a small valid patch file and returns its path.
func writePatch(t *testing.T, dir string) string {
	t.Helper()
	p := &patchfile.Patch{
		Arch: elf.EM_X86_64, BuildID: []byte{1, 2, 3, 4}, Target: "/bin/x", ID: "CVE-1", Level: 1,
		Sections: []patchfile.Section{{Name: ".hotpatch.text", Kind: patchfile.SectionText, Align: 16, Size: 4, Data: []byte{0xc3, 0x90, 0x90, 0x90}}},
		Symbols:  []patchfile.Symbol{{}, {Name: "f.hotpatch", Kind: patchfile.SymPatch, Type: elf.STT_FUNC, Size: 4}},
		Funcs:    []patchfile.Func{{Name: "f", OldOffset: 0x1000, OldSize: 16, NewSymbol: 1, NewSize: 4}},
	}
	path := filepath.Join(dir, "01020304.hpatch")
	if err := patchfile.WriteFile(path, p); err != nil {
		t.Fatal(err)
	}
	return path
}

// setup makes a patch, a key pair and a trusted-keys directory holding the
// public key, and a policy that requires signatures.
func setup(t *testing.T) (pol *Policy, patch, prefix string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	patch = writePatch(t, dir)
	prefix = filepath.Join(dir, "signer")
	if _, err := GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "trusted")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, prefix+".pub", filepath.Join(keys, "signer.pub"))
	return &Policy{RequireSignature: true, TrustedKeys: keys, CheckFiles: true}, patch, prefix
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pol, patch, prefix := setup(t)
	before, _ := os.ReadFile(patch)
	id, err := SignFile(prefix+".key", patch)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(patch)
	if !strings.HasPrefix(string(after), string(before)) || len(after) <= len(before) {
		t.Fatalf("signing must only append: %d bytes before, %d after", len(before), len(after))
	}
	// A reader that ignores signatures reads the signed file.
	if _, err := patchfile.ReadFile(patch); err != nil {
		t.Fatalf("signed file no longer reads: %v", err)
	}
	p, err := pol.Open(patch)
	if err != nil {
		t.Fatalf("open signed patch: %v", err)
	}
	v, err := pol.Verify(p)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status() != Verified || len(v.Signatures) != 1 || v.Signatures[0].KeyID != id {
		t.Fatalf("verification %+v, want one verified signature by %s", v.Signatures, id)
	}
	// Signing again with the same key adds nothing.
	if _, err := SignFile(prefix+".key", patch); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(patch)
	if string(again) != string(after) {
		t.Fatalf("signing twice with one key changed the file")
	}
	st, _ := os.Stat(patch)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("signing changed the mode to %04o", st.Mode().Perm())
	}
}

func TestUnsignedRefused(t *testing.T) {
	pol, patch, _ := setup(t)
	_, err := pol.Open(patch)
	if !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), patch) {
		t.Fatalf("got %v, want ErrUnsigned naming %s", err, patch)
	}
	pol.RequireSignature = false
	if _, err := pol.Open(patch); err != nil {
		t.Fatalf("signatures not required: %v", err)
	}
}

func TestTamperedRefused(t *testing.T) {
	pol, patch, prefix := setup(t)
	id, err := SignFile(prefix+".key", patch)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(patch)
	// Change a code byte and recompute the checksum, as an attacker
	// who can write the file would: only the signature can tell.
	i := strings.Index(string(b), "\xc3\x90\x90\x90")
	b[i] = 0xcc
	bodyEnd := 32 + int(binary.LittleEndian.Uint64(b[16:]))
	sum := sha256.Sum256(b[:bodyEnd])
	copy(b[bodyEnd+16+2:], sum[:])
	if err := os.WriteFile(patch, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := patchfile.ReadFile(patch); err != nil {
		t.Fatalf("the tampered file must pass its checksum for this test: %v", err)
	}
	_, err = pol.Open(patch)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), id) {
		t.Fatalf("got %v, want ErrInvalid naming key %s", err, id)
	}
}

func TestUntrustedAndRevokedRefused(t *testing.T) {
	pol, patch, _ := setup(t)
	other := filepath.Join(t.TempDir(), "other")
	otherID, err := GenerateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignFile(other+".key", patch); err != nil {
		t.Fatal(err)
	}
	_, err = pol.Open(patch)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), otherID) {
		t.Fatalf("untrusted: got %v, want ErrUntrusted naming %s", err, otherID)
	}
	// Trusted, then revoked by removing the key file.
	copyFile(t, other+".pub", filepath.Join(pol.TrustedKeys, "other.pub"))
	if _, err := pol.Open(patch); err != nil {
		t.Fatalf("trusted: %v", err)
	}
	if err := os.Remove(filepath.Join(pol.TrustedKeys, "other.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Open(patch); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("revoked: got %v, want ErrUntrusted", err)
	}
}

func TestWrongKeyRefused(t *testing.T) {
	pol, patch, prefix := setup(t)
	pub, _ := os.ReadFile(prefix + ".pub")
	trustedKey, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// A signature made by another key but claiming the trusted key's id.
	_, priv, _ := ed25519.GenerateKey(nil)
	b, _ := os.ReadFile(patch)
	p, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patchfile.AppendSignature(b, patchfile.Signature{Algorithm: patchfile.SigEd25519, KeyID: KeyID(trustedKey), Sig: ed25519.Sign(priv, p.SignedData())})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(patch, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Open(patch); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	// A junk signature and an unknown algorithm are invalid too.
	for _, s := range []patchfile.Signature{
		{Algorithm: patchfile.SigEd25519, KeyID: KeyID(trustedKey), Sig: []byte("junk")},
		{Algorithm: 99, KeyID: "x", Sig: make([]byte, 64)},
	} {
		one, _ := patchfile.AppendSignature(b, s)
		q, err := patchfile.Decode(one)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := LoadKeys(pol.TrustedKeys, true)
		if st := Check(q, keys).Status(); st != Invalid {
			t.Fatalf("signature %+v: status %s, want invalid", s, st)
		}
	}
}

func TestUnsafeFilesRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the ownership checks need root to chown a file to another user")
	}
	for _, tc := range []struct {
		name  string
		setup func(pol *Policy, patch string) string // returns the path the error names
	}{
		{"world-writable file", func(_ *Policy, patch string) string { os.Chmod(patch, 0o666); return patch }},
		{"group-writable file", func(_ *Policy, patch string) string { os.Chmod(patch, 0o664); return patch }},
		{"foreign-owned file", func(_ *Policy, patch string) string { os.Chown(patch, 4242, 4242); return patch }},
		{"writable directory", func(_ *Policy, patch string) string { d := filepath.Dir(patch); os.Chmod(d, 0o777); return d }},
		{"foreign-owned directory", func(_ *Policy, patch string) string { d := filepath.Dir(patch); os.Chown(d, 4242, 0); return d }},
		{"writable key file", func(pol *Policy, _ string) string {
			k := filepath.Join(pol.TrustedKeys, "signer.pub")
			os.Chmod(k, 0o646)
			return k
		}},
		{"foreign-owned key directory", func(pol *Policy, _ string) string { os.Chown(pol.TrustedKeys, 4242, 0); return pol.TrustedKeys }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, patch, prefix := setup(t)
			if _, err := SignFile(prefix+".key", patch); err != nil {
				t.Fatal(err)
			}
			bad := tc.setup(pol, patch)
			_, err := pol.Open(patch)
			if !errors.Is(err, ErrUnsafeFile) || !strings.Contains(err.Error(), bad) {
				t.Fatalf("got %v, want ErrUnsafeFile naming %s", err, bad)
			}
			if !strings.Contains(err.Error(), "chmod go-w "+bad) && !strings.Contains(err.Error(), "chown root "+bad) {
				t.Fatalf("%v: no fix given", err)
			}
		})
	}
}

func TestPrivateKeyModeChecked(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "k")
	if _, err := GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(prefix + ".key")
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %04o, want 0600", st.Mode().Perm())
	}
	if _, err := GenerateKey(prefix); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	os.Chmod(prefix+".key", 0o644)
	if _, err := LoadPrivateKey(prefix + ".key"); !errors.Is(err, ErrUnsafeFile) {
		t.Fatalf("got %v, want ErrUnsafeFile", err)
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	missing, err := LoadPolicy(filepath.Join(dir, "none"))
	if err != nil || missing.RequireSignature || missing.TrustedKeys != DefaultTrustedKeys {
		t.Fatalf("missing config: %+v, %v", missing, err)
	}
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("# host policy\n\nrequire_signature = true   # refuse unsigned\ntrusted_keys = /srv/keys\n"), 0o644)
	pol, err := LoadPolicy(cfg)
	if err != nil || !pol.RequireSignature || pol.TrustedKeys != "/srv/keys" || pol.Source != cfg {
		t.Fatalf("config: %+v, %v", pol, err)
	}
	for _, bad := range []string{"require_signatures = true\n", "require_signature = maybe\n", "trusted_keys\n", "trusted_keys =\n"} {
		os.WriteFile(cfg, []byte(bad), 0o644)
		if _, err := LoadPolicy(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: got %v, want ErrConfig at line 1", bad, err)
		}
	}
	if os.Geteuid() == 0 {
		os.WriteFile(cfg, []byte("require_signature = true\n"), 0o644)
		os.Chmod(cfg, 0o666)
		if _, err := LoadPolicy(cfg); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("world-writable config: got %v, want ErrUnsafeFile", err)
		}
	}
}
