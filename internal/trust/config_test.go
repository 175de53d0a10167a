package trust

import (
	"strings"
	"testing"
)

// FuzzParseConfig: the parser never panics, and what it accepts it
// accepts again with the same result, comments and blank lines aside.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"# nothing\n\n",
		"require_signature = true\ntrusted_keys = /etc/hotpatch/trusted-keys\n",
		"require_signature=false # off\r\n",
		"trusted_keys = a = b\n",
		"require_signatures = true\n",
		"=\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pol := &Policy{TrustedKeys: DefaultTrustedKeys}
		if err := parseConfig(strings.NewReader(s), "config", pol); err != nil {
			return
		}
		again := &Policy{TrustedKeys: DefaultTrustedKeys}
		if err := parseConfig(strings.NewReader(s+"\n# again\n"), "config", again); err != nil || *again != *pol {
			t.Fatalf("%q: parsed as %+v, then %+v (%v)", s, pol, again, err)
		}
	})
}
