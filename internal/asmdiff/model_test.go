package asmdiff

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name, norm, family, coldParent string
	}{
		{"counter.2", "counter.#", "counter", "counter.2"},
		{"f.part.0", "f.part.#", "f", "f.part.0"},
		{"f.constprop.0.isra.1", "f.constprop.#.isra.#", "f", "f.constprop.0.isra.1"},
		{"f.cold", "f.cold", "f", "f"},
		{"f.part.0.cold", "f.part.#.cold", "f", "f.part.0"},
		{"f.cold.3", "f.cold.#", "f", "f"},
		{"f.lto_priv.0", "f.lto_priv.#", "f", "f.lto_priv.0"},
		{"f.localalias", "f.localalias", "f", "f.localalias"},
		{"_ZN3geo4Rect4areaEv", "_ZN3geo4Rect4areaEv", "_ZN3geo4Rect4areaEv", "_ZN3geo4Rect4areaEv"},
		{"_GLOBAL__sub_I__Z5levelv", "_GLOBAL__sub_I_", "_GLOBAL__sub_I__Z5levelv", "_GLOBAL__sub_I__Z5levelv"},
		{"coldness", "coldness", "coldness", "coldness"},
	}
	for _, tt := range tests {
		if got := normName(tt.name); got != tt.norm {
			t.Errorf("normName(%q) = %q, want %q", tt.name, got, tt.norm)
		}
		if got := familyOf(tt.name); got != tt.family {
			t.Errorf("familyOf(%q) = %q, want %q", tt.name, got, tt.family)
		}
		if got := coldParent(tt.name); got != tt.coldParent {
			t.Errorf("coldParent(%q) = %q, want %q", tt.name, got, tt.coldParent)
		}
	}
}

// TestStaticLocalsKeepOriginal checks, from real compiler output, that
// patch code uses the original function-local statics (their live values)
// even though gcc numbered them differently in the patched file, and that
// the new static gets storage of its own.
func TestStaticLocalsKeepOriginal(t *testing.T) {
	testutil.RequireGCC(t)
	var c testCase
	for _, x := range loadCases(t) {
		if x.name == "static_locals" {
			c = x
		}
	}
	if c.name == "" {
		t.Fatal("no static_locals case")
	}
	countRef := regexp.MustCompile(`\bcount\.[0-9]+\b`)
	for _, fs := range asmtest.FlagSets {
		r := runCase(t, c, fs)
		if r.err != nil {
			t.Fatalf("%s: %v", fs.Name, r.err)
		}
		orig := string(r.orig)
		patch := string(r.out[len(r.orig):])
		// tock's count is the one initialised to 100.
		tockCount := definedWith(orig, "\t.long\t100")
		if tockCount == "" {
			t.Fatalf("%s: no count initialised to 100 in the original", fs.Name)
		}
		newCount := definedWith(patch, "\t.long\t5")
		if newCount == "" || strings.Contains(orig, "\n"+newCount+":") {
			t.Fatalf("%s: the new static is not defined in the patch under a name of its own (%q)", fs.Name, newCount)
		}
		if strings.HasPrefix(fs.Name, "O0") {
			body := between(patch, "tock.hotpatch:", ".size\ttock.hotpatch")
			for _, ref := range countRef.FindAllString(body, -1) {
				if ref != tockCount {
					t.Errorf("%s: patched tock uses %s, want the original %s", fs.Name, ref, tockCount)
				}
			}
			if !strings.Contains(body, tockCount) {
				t.Errorf("%s: patched tock does not use %s", fs.Name, tockCount)
			}
		}
		for _, ref := range countRef.FindAllString(patch, -1) {
			if ref != newCount && !strings.Contains(orig, "\n"+ref+":") && !strings.Contains(orig, ".comm\t"+ref+",") {
				t.Errorf("%s: patch code uses %s, which is neither original nor new", fs.Name, ref)
			}
		}
	}
}

// definedWith returns the label whose first datum is the given line.
func definedWith(s, datum string) string {
	i := strings.Index(s, ":\n"+datum+"\n")
	if i < 0 {
		return ""
	}
	j := strings.LastIndexByte(s[:i], '\n')
	return s[j+1 : i]
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	j := strings.Index(s[i:], to)
	if j < 0 {
		return s[i:]
	}
	return s[i : i+j]
}

// TestRefusedRelocations compiles cases with flags outside the supported
// set, whose code needs relocation forms that patch code cannot carry
// (the large code model's GOT-relative addressing, TLS descriptors), and
// checks that Generate refuses them naming the line.
func TestRefusedRelocations(t *testing.T) {
	testutil.RequireGCC(t)
	for _, tt := range []struct {
		dir   string
		flags []string
		want  string
	}{
		{"testdata/cases/pic_data", []string{"-O2", "-fPIC", "-mcmodel=large"}, "@GOTOFF"},
		{"testdata/cases/tls", []string{"-O2", "-fPIC", "-mtls-dialect=gnu2"}, "@TLSDESC"},
	} {
		orig := asmtest.CompileFile(t, tt.dir+"/orig.c", tt.flags)
		patched := asmtest.CompileFile(t, tt.dir+"/patched.c", tt.flags)
		_, _, err := Generate(orig, patched, Options{})
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !errors.Is(err, ErrRelocation) {
			t.Errorf("%s %v: got %v, want a refused relocation", tt.dir, tt.flags, err)
			continue
		}
		if ue.Line == 0 || !strings.Contains(err.Error(), tt.want) && !strings.Contains(err.Error(), "_GLOBAL_OFFSET_TABLE_") {
			t.Errorf("%s %v: %v does not name the line and the form", tt.dir, tt.flags, err)
		}
	}
}
