package asmdiff

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(asmtest.Runner{M: m}) }

var keepOutputs = flag.String("keep", "", "write the inputs and outputs of the golden cases into this folder")

// expectation is the expected report of a case: testdata/cases/NAME/expect.json.
// Lists are sets of source names. Flags overrides fields for some flag sets:
// its keys are comma-separated flag set names, where "O2*" matches every
// name that starts with "O2".
type expectation struct {
	Doc         string   `json:"doc"`
	Changed     []string `json:"changed"`
	New         []string `json:"new"`
	NewVars     []string `json:"new_variables"`
	ChangedVars []string `json:"changed_variables"`
	// Warnings are substrings that must each appear in some warning.
	Warnings []string `json:"warnings"`
	// Error, when set, says that Generate must refuse.
	Error *struct {
		// Type is "variable" (*VariableChangedError) or the name of an
		// Err* sentinel of an *UnsupportedError ("ErrNewTLSVariable").
		Type     string   `json:"type"`
		Contains []string `json:"contains"`
	} `json:"error"`
	// Contains are substrings of the patch sections that must appear,
	// and Lacks substrings that must not.
	Contains []string                   `json:"contains"`
	Lacks    []string                   `json:"lacks"`
	Flags    map[string]*expectOverride `json:"flags"`
	// Link asks for the case to be linked too (TestLink).
	Link bool `json:"link"`
	// DebugFlagSets runs the case at asmtest.DebugFlagSets too (-O0 -g,
	// -O2 -g -fPIC).
	DebugFlagSets bool `json:"debug_flag_sets"`
}

// flagSets are the flag sets a case runs at.
func (c testCase) flagSets() []asmtest.FlagSet {
	if !c.expect.DebugFlagSets {
		return asmtest.FlagSets
	}
	return append(append([]asmtest.FlagSet{}, asmtest.FlagSets...), asmtest.DebugFlagSets...)
}

type expectOverride struct {
	Changed     *[]string `json:"changed"`
	New         *[]string `json:"new"`
	NewVars     *[]string `json:"new_variables"`
	ChangedVars *[]string `json:"changed_variables"`
	Warnings    *[]string `json:"warnings"`
	Contains    *[]string `json:"contains"`
	Lacks       *[]string `json:"lacks"`
	// Why explains the difference at these flags.
	Why string `json:"why"`
}

func (e expectation) at(flagSet string) expectation {
	out := e
	// Wildcard keys apply first, so that exact names override them.
	keys := make([]string, 0, len(e.Flags))
	for k := range e.Flags {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		wi, wj := strings.Contains(keys[i], "*"), strings.Contains(keys[j], "*")
		if wi != wj {
			return wi
		}
		return keys[i] < keys[j]
	})
	for _, key := range keys {
		o := e.Flags[key]
		if !flagKeyMatches(key, flagSet) {
			continue
		}
		for _, f := range []struct {
			dst *[]string
			src *[]string
		}{{&out.Changed, o.Changed}, {&out.New, o.New}, {&out.NewVars, o.NewVars}, {&out.ChangedVars, o.ChangedVars},
			{&out.Warnings, o.Warnings}, {&out.Contains, o.Contains}, {&out.Lacks, o.Lacks}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
	}
	return out
}

func flagKeyMatches(key, name string) bool {
	for _, k := range strings.Split(key, ",") {
		k = strings.TrimSpace(k)
		if k == name || strings.HasSuffix(k, "*") && strings.HasPrefix(name, strings.TrimSuffix(k, "*")) {
			return true
		}
	}
	return false
}

type testCase struct {
	name, dir   string
	orig, patch string
	expect      expectation
}

func loadCases(t testing.TB) []testCase {
	t.Helper()
	dirs, err := filepath.Glob("testdata/cases/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under testdata/cases: %v", err)
	}
	var cases []testCase
	for _, dir := range dirs {
		c := testCase{name: filepath.Base(dir), dir: dir}
		for _, ext := range []string{".c", ".cc"} {
			if _, err := os.Stat(filepath.Join(dir, "orig"+ext)); err == nil {
				c.orig, c.patch = filepath.Join(dir, "orig"+ext), filepath.Join(dir, "patched"+ext)
			}
		}
		if c.orig == "" {
			t.Fatalf("case %s has no orig.c or orig.cc", dir)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "expect.json"))
		if err != nil {
			t.Fatalf("case %s: %v", dir, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.expect); err != nil {
			t.Fatalf("case %s: expect.json: %v", dir, err)
		}
		cases = append(cases, c)
	}
	return cases
}

// run compiles both sides of a case at a flag set and runs Generate.
type run struct {
	orig, patch, out []byte
	rep              *Report
	err              error
}

func runCase(t testing.TB, c testCase, fs asmtest.FlagSet) run {
	t.Helper()
	var r run
	r.orig = asmtest.CompileFile(t, c.orig, fs.Flags)
	r.patch = asmtest.CompileFile(t, c.patch, fs.Flags)
	r.out, r.rep, r.err = Generate(r.orig, r.patch, Options{OriginalName: "orig.s", PatchedName: "patched.s"})
	if *keepOutputs != "" {
		d := filepath.Join(*keepOutputs, c.name, fs.Name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "orig.s"), r.orig, 0o644)
		os.WriteFile(filepath.Join(d, "patched.s"), r.patch, 0o644)
		if r.err == nil {
			os.WriteFile(filepath.Join(d, "out.s"), r.out, 0o644)
			js, _ := json.MarshalIndent(r.rep, "", "  ")
			os.WriteFile(filepath.Join(d, "report.json"), js, 0o644)
		}
	}
	return r
}

// TestGolden compiles every case at every flag set and checks the report
// against expect.json, then checks that the output assembles and leaves
// every original section as it was.
func TestGolden(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range loadCases(t) {
		for _, fs := range c.flagSets() {
			c, fs := c, fs
			t.Run(c.name+"/"+fs.Name, func(t *testing.T) {
				t.Parallel()
				r := runCase(t, c, fs)
				want := c.expect.at(fs.Name)
				if want.Error != nil {
					checkError(t, r.err, want)
					return
				}
				if r.err != nil {
					t.Fatalf("Generate: %v", r.err)
				}
				checkReport(t, r.rep, want)
				checkOutput(t, r, want)
			})
		}
	}
}

func checkError(t *testing.T, err error, want expectation) {
	t.Helper()
	if err == nil {
		t.Fatalf("Generate accepted the change; want a refusal (%s)", want.Error.Type)
	}
	var vce *VariableChangedError
	var ue *UnsupportedError
	switch want.Error.Type {
	case "variable":
		if !errors.As(err, &vce) {
			t.Fatalf("error %v (%T), want *VariableChangedError", err, err)
		}
	default:
		sentinels := map[string]error{"ErrNewTLSVariable": ErrNewTLSVariable, "ErrDynamicInit": ErrDynamicInit,
			"ErrRelocation": ErrRelocation, "ErrConstruct": ErrConstruct, "ErrAliasChanged": ErrAliasChanged}
		s, ok := sentinels[want.Error.Type]
		if !ok {
			t.Fatalf("expect.json names unknown error type %q", want.Error.Type)
		}
		if !errors.As(err, &ue) || !errors.Is(err, s) {
			t.Fatalf("error %v (%T), want *UnsupportedError for %v", err, err, s)
		}
	}
	for _, sub := range want.Error.Contains {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q lacks %q", err, sub)
		}
	}
}

func names(cs []Change, status string) []string {
	out := []string{}
	for _, c := range cs {
		if c.Status == status {
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func checkReport(t *testing.T, rep *Report, want expectation) {
	t.Helper()
	for _, x := range []struct {
		what      string
		got, want []string
	}{
		{"changed functions", names(rep.Functions, StatusChanged), sorted(want.Changed)},
		{"new functions", names(rep.Functions, StatusNew), sorted(want.New)},
		{"new variables", names(rep.Variables, StatusNew), sorted(want.NewVars)},
		{"changed variables", names(rep.Variables, StatusChanged), sorted(want.ChangedVars)},
	} {
		if strings.Join(x.got, " ") != strings.Join(x.want, " ") {
			t.Errorf("%s: got %q, want %q", x.what, x.got, x.want)
		}
	}
	for _, w := range want.Warnings {
		found := false
		for _, got := range rep.Warnings {
			found = found || strings.Contains(got, w)
		}
		if !found {
			t.Errorf("no warning contains %q; warnings: %q", w, rep.Warnings)
		}
	}
	if t.Failed() {
		js, _ := json.MarshalIndent(rep, "", "  ")
		t.Logf("report: %s", js)
	}
}

func checkOutput(t *testing.T, r run, want expectation) {
	t.Helper()
	if len(r.rep.Functions)+len(r.rep.Variables) == 0 {
		if !bytes.Equal(r.out, r.orig) {
			t.Fatalf("nothing changed but the output is not the original")
		}
		return
	}
	if !bytes.HasPrefix(r.out, r.orig) {
		t.Fatalf("the output does not start with the original")
	}
	patch := string(r.out[len(r.orig):])
	if !strings.HasPrefix(strings.TrimLeft(patch, "\n"), Marker+"\n") {
		t.Fatalf("the patch sections do not start with the marker line")
	}
	for _, s := range want.Contains {
		if !strings.Contains(patch, s) {
			t.Errorf("patch sections lack %q", s)
		}
	}
	for _, s := range want.Lacks {
		if strings.Contains(patch, s) {
			t.Errorf("patch sections contain %q", s)
		}
	}
	checkAssembles(t, r.orig, r.out)
}

// checkAssembles assembles the output and the original alone and compares
// every original allocated section byte for byte; patch sections must not
// be allocated.
func checkAssembles(t *testing.T, orig, out []byte) {
	t.Helper()
	eo := openELF(t, asmtest.Assemble(t, orig))
	defer eo.Close()
	ep := openELF(t, asmtest.Assemble(t, out))
	defer ep.Close()
	for _, s := range eo.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 && s.Name != ".gcc_except_table" {
			continue
		}
		ps := ep.Section(s.Name)
		if ps == nil {
			t.Errorf("section %s missing from the output", s.Name)
			continue
		}
		if s.Type == elf.SHT_NOBITS {
			if ps.Size != s.Size {
				t.Errorf("section %s: size %d, original %d", s.Name, ps.Size, s.Size)
			}
			continue
		}
		a, _ := s.Data()
		b, _ := ps.Data()
		if !bytes.Equal(a, b) {
			t.Errorf("section %s differs from the original's", s.Name)
		}
		ra, rb := relocsOf(eo, s.Name), relocsOf(ep, s.Name)
		if !bytes.Equal(ra, rb) {
			t.Errorf("relocations of section %s differ from the original's", s.Name)
		}
	}
	for _, s := range ep.Sections {
		if strings.HasPrefix(s.Name, ".hotpatch.") && s.Flags&elf.SHF_ALLOC != 0 {
			t.Errorf("patch section %s is allocated", s.Name)
		}
		if s.Flags&elf.SHF_ALLOC != 0 && eo.Section(s.Name) == nil {
			t.Errorf("the output has an allocated section %s that the original has not", s.Name)
		}
	}
}

func openELF(t *testing.T, path string) *elf.File {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// relocsOf returns the raw relocation records of a section. Symbol indexes
// may differ when the output adds symbols, so only offsets, types and
// addends are kept.
func relocsOf(f *elf.File, name string) []byte {
	rs := f.Section(".rela" + name)
	if rs == nil {
		return nil
	}
	data, _ := rs.Data()
	var out []byte
	syms, _ := f.Symbols()
	for k := 0; k+24 <= len(data); k += 24 {
		out = append(out, data[k:k+8]...)    // offset
		out = append(out, data[k+8:k+12]...) // type
		out = append(out, data[k+16:k+24]...)
		symIdx := int(f.ByteOrder.Uint32(data[k+12 : k+16]))
		if symIdx > 0 && symIdx-1 < len(syms) {
			s := syms[symIdx-1]
			out = append(out, []byte(s.Name)...)
			if elf.ST_TYPE(s.Info) == elf.STT_SECTION && int(s.Section) < len(f.Sections) {
				out = append(out, []byte(f.Sections[s.Section].Name)...)
			}
		}
		out = append(out, 0)
	}
	return out
}

// TestIdentity checks the identity rule on every source of the corpus at
// every flag set: comparing a file with itself reports nothing and
// returns the file unchanged.
func TestIdentity(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range loadCases(t) {
		for _, fs := range asmtest.FlagSets {
			for _, src := range []string{c.orig, c.patch} {
				c, fs, src := c, fs, src
				t.Run(c.name+"/"+filepath.Base(src)+"/"+fs.Name, func(t *testing.T) {
					t.Parallel()
					s := asmtest.CompileFile(t, src, fs.Flags)
					out, rep, err := Generate(s, s, Options{})
					if err != nil {
						t.Fatalf("Generate(x, x): %v", err)
					}
					if !bytes.Equal(out, s) {
						t.Errorf("Generate(x, x) did not return x")
					}
					if len(rep.Functions)+len(rep.Variables) != 0 {
						t.Errorf("Generate(x, x) reported changes: %+v", rep)
					}
				})
			}
		}
	}
}
