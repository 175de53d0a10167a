package trust

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// parseConfig reads the host configuration: one "key = value" per line,
// "#" starts a comment, blank lines are ignored. Keys:
//
//	require_signature = true|false   refuse patches without a valid signature by a trusted key
//	trusted_keys = DIR               the directory of trusted public keys
//
// An unknown key is an error rather than ignored: a misspelt
// require_signature must not leave a host silently unprotected.
func parseConfig(r io.Reader, name string, pol *Policy) error {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" {
			return fmt.Errorf("%s line %d: %w: want \"key = value\", found %q", name, n, ErrConfig, sc.Text())
		}
		switch key {
		case "require_signature":
			switch strings.ToLower(val) {
			case "true", "yes", "1":
				pol.RequireSignature = true
			case "false", "no", "0":
				pol.RequireSignature = false
			default:
				return fmt.Errorf("%s line %d: %w: require_signature is %q, want true or false", name, n, ErrConfig, val)
			}
		case "trusted_keys":
			if val == "" {
				return fmt.Errorf("%s line %d: %w: trusted_keys needs a directory", name, n, ErrConfig)
			}
			pol.TrustedKeys = val
		default:
			return fmt.Errorf("%s line %d: %w: unknown key %q (known: require_signature, trusted_keys)", name, n, ErrConfig, key)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}
