// Package trust decides whether a patch file may be applied on this host:
// the host policy (/etc/hotpatch/config), the trusted Ed25519 keys, the
// verification of a patch's signatures, and the checks on who may have
// written the files involved. docs/security.md explains the threat model.
//
// A caller that applies patches (the patch command, the daemon) needs two
// calls:
//
//	pol, err := trust.LoadPolicy(trust.DefaultConfig)
//	p, err := pol.Open(path) // file checks, decode, signature policy
//
// and, to report what it found, pol.Verify(p).
package trust

import (
	"errors"
	"fmt"
	"os"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// Defaults of the host policy.
const (
	DefaultConfig      = "/etc/hotpatch/config"
	DefaultTrustedKeys = "/etc/hotpatch/trusted-keys"
)

// Errors callers can test for with errors.Is.
var (
	// ErrUnsigned: signatures are required and the patch has none.
	ErrUnsigned = errors.New("the patch is not signed")
	// ErrUntrusted: signatures are required and no signature of the
	// patch is by a trusted key.
	ErrUntrusted = errors.New("no signature by a trusted key")
	// ErrInvalid: a signature names a trusted key but does not verify:
	// the signed bytes changed, or another key made it.
	ErrInvalid = errors.New("signature does not verify")
	// ErrUnsafeFile: a file that decides what runs in other processes
	// could have been written by someone other than root or the caller.
	ErrUnsafeFile = errors.New("unsafe file permissions")
	// ErrConfig: the host configuration file is malformed.
	ErrConfig = errors.New("bad configuration")
)

// Policy is the host's policy for opening patch files.
type Policy struct {
	// RequireSignature refuses patches without a valid signature by a
	// trusted key.
	RequireSignature bool
	// TrustedKeys is the directory of trusted public keys (*.pub).
	TrustedKeys string
	// CheckFiles refuses patch, key and configuration files (and their
	// directories) that a user other than root or the caller could have
	// written. LoadPolicy turns it on when the caller is root, where a
	// writable patch file would let its writer run code as root.
	CheckFiles bool
	// Source is the configuration file the policy was read from, empty
	// when there was none.
	Source string
}

// LoadPolicy reads the host configuration at path (see ParseConfig for the
// format). A missing file gives the defaults: signatures not required,
// keys in DefaultTrustedKeys. Running as root, a configuration file that
// others could write is refused, since it could turn the requirement off.
func LoadPolicy(path string) (*Policy, error) {
	pol := &Policy{TrustedKeys: DefaultTrustedKeys, CheckFiles: os.Geteuid() == 0}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return pol, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read hotpatch configuration: %w", err)
	}
	defer f.Close()
	if pol.CheckFiles {
		if err := CheckFile(path, f); err != nil {
			return nil, err
		}
	}
	if err := parseConfig(f, path, pol); err != nil {
		return nil, err
	}
	pol.Source = path
	return pol, nil
}

// Open reads the patch file at path for applying: when the policy checks
// files, the file and its directory must be safe (CheckFile); the file must
// decode; and when signatures are required, one of them must verify with a
// trusted key. The trusted keys are read at every call, so a key removed
// from the directory is refused from the next Open on.
func (pol *Policy) Open(path string) (*patchfile.Patch, error) {
	b, err := pol.readFile(path)
	if err != nil {
		return nil, err
	}
	p, err := patchfile.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("read patch %s: %w", path, err)
	}
	if !pol.RequireSignature {
		return p, nil
	}
	v, err := pol.Verify(p)
	if err != nil {
		return nil, fmt.Errorf("patch %s: %w", path, err)
	}
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("patch %s refused: %w", path, err)
	}
	return p, nil
}

func (pol *Policy) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read patch: %w", err)
	}
	defer f.Close()
	if pol.CheckFiles {
		if err := CheckFile(path, f); err != nil {
			return nil, err
		}
	}
	b, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("read patch %s: %w", path, err)
	}
	return b, nil
}
