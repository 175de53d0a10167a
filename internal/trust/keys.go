package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// Key files are PEM: the private key as PKCS #8 ("PRIVATE KEY"), the public
// key as PKIX ("PUBLIC KEY"), the forms openssl reads and writes
// (openssl genpkey -algorithm ed25519), so keys can be made or kept with
// other tools.
const (
	privateKeyExt = ".key"
	publicKeyExt  = ".pub"
)

// KeyID names a public key in signature records and messages: the lowercase
// hex of the first 8 bytes of the SHA-256 of its 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new Ed25519 key pair and writes PREFIX.key (mode
// 0600) and PREFIX.pub (0644). It refuses to overwrite either file.
func GenerateKey(prefix string) (keyID string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	keyPath, pubPath := prefix+privateKeyExt, prefix+publicKeyExt
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("%s exists; choose another prefix or remove it first (a key is never overwritten)", p)
		}
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(keyPath)
		return "", err
	}
	return KeyID(pub), nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		// The umask may have taken bits from mode; never added any.
		werr = os.Chmod(path, mode)
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, werr)
	}
	return nil
}

// LoadPrivateKey reads a private key written by GenerateKey (or by openssl
// genpkey -algorithm ed25519). A key file that group or others can read is
// refused, as ssh does: the key may already be compromised.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s can be read or written by group or others (mode %04o): %w; run chmod 600 %s, and consider the key exposed",
			path, st.Mode().Perm(), ErrUnsafeFile, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM \"PRIVATE KEY\" (make one with hotpatch keygen)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s is a %T, hotpatch signs with Ed25519 keys", path, k)
	}
	return priv, nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" holding an Ed25519 key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return pub, nil
}

// Keys are the trusted public keys by key id.
type Keys map[string]ed25519.PublicKey

// LoadKeys reads every *.pub file of dir. A missing directory holds no
// keys. With checkFiles, a key file or a directory that a user other than
// root or the caller could write is refused: whoever can add a key can
// sign patches.
func LoadKeys(dir string, checkFiles bool) (Keys, error) {
	keys := Keys{}
	names, err := filepath.Glob(filepath.Join(dir, "*"+publicKeyExt))
	if err != nil {
		return nil, fmt.Errorf("read trusted keys in %s: %w", dir, err)
	}
	if len(names) == 0 {
		if _, err := os.Stat(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read trusted keys in %s: %w", dir, err)
		}
		return keys, nil
	}
	sort.Strings(names)
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read trusted key: %w", err)
		}
		if checkFiles {
			if err := CheckFile(name, f); err != nil {
				f.Close()
				return nil, fmt.Errorf("trusted key: %w", err)
			}
		}
		b, err := readAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read trusted key %s: %w", name, err)
		}
		pub, err := ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w; remove it or replace it with a .pub file from hotpatch keygen", name, err)
		}
		keys[KeyID(pub)] = pub
	}
	return keys, nil
}

// SignFile signs the patch file at patchPath with the private key at
// keyPath: it adds a SIGN record after the last record and rewrites the
// file in one rename, keeping its mode. Signing again with the same key
// changes nothing. It returns the key id.
func SignFile(keyPath, patchPath string) (string, error) {
	priv, err := LoadPrivateKey(keyPath)
	if err != nil {
		return "", err
	}
	id := KeyID(priv.Public().(ed25519.PublicKey))
	st, err := os.Stat(patchPath)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	b, err := os.ReadFile(patchPath)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	p, err := patchfile.Decode(b)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", patchPath, err)
	}
	for _, s := range p.Signatures {
		if s.Algorithm == patchfile.SigEd25519 && s.KeyID == id && ed25519.Verify(priv.Public().(ed25519.PublicKey), p.SignedData(), s.Sig) {
			return id, nil
		}
	}
	sig := patchfile.Signature{Algorithm: patchfile.SigEd25519, KeyID: id, Sig: ed25519.Sign(priv, p.SignedData())}
	out, err := patchfile.AppendSignature(b, sig)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", patchPath, err)
	}
	if err := patchfile.WriteBytes(patchPath, out, st.Mode().Perm()); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return id, nil
}

// Status is the verdict on one signature, or on a whole patch.
type Status string

const (
	// Verified: the signature is by a trusted key and covers the file
	// as it is.
	Verified Status = "verified"
	// Untrusted: the signature names a key that is not trusted here
	// (never was, or was removed), so it cannot be checked.
	Untrusted Status = "untrusted"
	// Invalid: the signature names a trusted key but does not verify
	// (the signed bytes changed, or another key made it), or it uses an
	// algorithm this hotpatch does not know.
	Invalid Status = "invalid"
	// Unsigned: the patch has no signature (a patch's status only).
	Unsigned Status = "unsigned"
)

// SignatureCheck is the verdict on one signature of a patch.
type SignatureCheck struct {
	KeyID  string `json:"key_id"`
	Status Status `json:"status"`
	// Reason says why a signature is not verified.
	Reason string `json:"reason,omitempty"`
}

// Verification is the verdict on every signature of a patch.
type Verification struct {
	Signatures []SignatureCheck
	// KeysDir is where the trusted keys were read, for messages.
	KeysDir string
}

// Check verifies each signature of p against keys.
func Check(p *patchfile.Patch, keys Keys) *Verification {
	v := &Verification{}
	for _, s := range p.Signatures {
		c := SignatureCheck{KeyID: s.KeyID}
		pub, trusted := keys[s.KeyID]
		switch {
		case s.Algorithm != patchfile.SigEd25519:
			c.Status, c.Reason = Invalid, fmt.Sprintf("unknown signature algorithm %d", s.Algorithm)
		case !trusted:
			c.Status, c.Reason = Untrusted, "no trusted key has this id"
		case len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, p.SignedData(), s.Sig):
			c.Status, c.Reason = Invalid, "the signature does not match the file: it was modified after signing, or signed by another key"
		default:
			c.Status = Verified
		}
		v.Signatures = append(v.Signatures, c)
	}
	return v
}

// Verify checks the signatures of p against the trusted keys of the
// policy, read now.
func (pol *Policy) Verify(p *patchfile.Patch) (*Verification, error) {
	keys, err := LoadKeys(pol.TrustedKeys, pol.CheckFiles)
	if err != nil {
		return nil, err
	}
	v := Check(p, keys)
	v.KeysDir = pol.TrustedKeys
	return v, nil
}

// Status sums up the verification: verified when a trusted key's
// signature verifies, otherwise invalid, untrusted or unsigned, the worst
// found first.
func (v *Verification) Status() Status {
	if len(v.Signatures) == 0 {
		return Unsigned
	}
	worst := Untrusted
	for _, c := range v.Signatures {
		if c.Status == Verified {
			return Verified
		}
		if c.Status == Invalid {
			worst = Invalid
		}
	}
	return worst
}

// Err is nil when the patch has a verified signature, and otherwise says
// why it is refused, naming the key ids (ErrUnsigned, ErrUntrusted or
// ErrInvalid).
func (v *Verification) Err() error {
	var ids []string
	for _, c := range v.Signatures {
		ids = append(ids, c.KeyID)
	}
	where := v.KeysDir
	if where == "" {
		where = "the trusted keys"
	}
	switch v.Status() {
	case Verified:
		return nil
	case Unsigned:
		return fmt.Errorf("%w; sign it with hotpatch sign --key KEY.key and trust KEY.pub in %s", ErrUnsigned, where)
	case Invalid:
		var bad []string
		for _, c := range v.Signatures {
			if c.Status == Invalid {
				bad = append(bad, c.KeyID+" ("+c.Reason+")")
			}
		}
		return fmt.Errorf("%w: key %s; get an intact copy of the patch", ErrInvalid, strings.Join(bad, ", "))
	}
	return fmt.Errorf("%w: signed by key %s, not in %s; add its .pub file there if you trust it",
		ErrUntrusted, strings.Join(ids, ", "), where)
}
