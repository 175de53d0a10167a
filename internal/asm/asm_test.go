package asm

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(asmtest.Runner{M: m}) }

type wantStmt struct {
	kind Kind
	name string
	args string
}

func stmtsOf(t *testing.T, src string) []wantStmt {
	t.Helper()
	f, err := ParseString(src)
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	var got []wantStmt
	for _, s := range f.Stmts {
		got = append(got, wantStmt{s.Kind, s.Name, s.Args})
	}
	return got
}

func TestParseStatements(t *testing.T) {
	tests := []struct {
		src  string
		want []wantStmt
	}{
		{"\tmovl\t$5, %eax\n", []wantStmt{{Instruction, "movl", "$5, %eax"}}},
		{"f:\n.LFB0:\n", []wantStmt{{Label, "f", ""}, {Label, ".LFB0", ""}}},
		{"a: b: ret\n", []wantStmt{{Label, "a", ""}, {Label, "b", ""}, {Instruction, "ret", ""}}},
		{"1:\taddl $1, %eax # count\n", []wantStmt{{Label, "1", ""}, {Instruction, "addl", "$1, %eax"}}},
		{"\trdtsc; nop\n", []wantStmt{{Instruction, "rdtsc", ""}, {Instruction, "nop", ""}}},
		{"\t.string\t\"a;b#c\\\"d\"\n", []wantStmt{{Directive, ".string", "\"a;b#c\\\"d\""}}},
		{"\tdata16\tleaq\tx@tlsgd(%rip), %rdi\n", []wantStmt{{Instruction, "data16\tleaq", "x@tlsgd(%rip), %rdi"}}},
		{"\trep stosq\n", []wantStmt{{Instruction, "rep stosq", ""}}},
		{"\trex64\n", []wantStmt{{Instruction, "rex64", ""}}},
		{"x = y + 4\n", []wantStmt{{Assign, "x", "y + 4"}}},
		{"\t.set\tA,B\n", []wantStmt{{Directive, ".set", "A,B"}}},
		{"/* a\n b */ nop /* c */\n", []wantStmt{{Instruction, "nop", ""}}},
		{"\t.byte 'a, ';\n", []wantStmt{{Directive, ".byte", "'a, ';"}}},
		{"#APP\n# 5 \"x.c\" 1\n\tnop\n#NO_APP\n", []wantStmt{{Instruction, "nop", ""}}},
		{"\tmovl\t%fs:x@tpoff, %eax\n", []wantStmt{{Instruction, "movl", "%fs:x@tpoff, %eax"}}},
		{"\"quoted name\":\n", []wantStmt{{Label, "\"quoted name\"", ""}}},
	}
	for _, tt := range tests {
		if got := stmtsOf(t, tt.src); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q:\n got %v\nwant %v", tt.src, got, tt.want)
		}
	}
}

func TestParseLineNumbers(t *testing.T) {
	f, err := ParseString("\tnop\n/* one\ntwo */\n\n\tret\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Stmts) != 2 || f.Stmts[0].Line != 1 || f.Stmts[1].Line != 5 {
		t.Fatalf("lines: %+v", f.Stmts)
	}
	if got := f.Stmts[1].Text(f); got != "ret" {
		t.Fatalf("text %q", got)
	}
	if i := f.StmtAt(strings.Index(f.Src, "ret")); i != 1 {
		t.Fatalf("StmtAt(ret) = %d", i)
	}
	if i := f.StmtAt(6); i != -1 {
		t.Fatalf("StmtAt(comment) = %d, want -1", i)
	}
}

func TestSections(t *testing.T) {
	src := `	.text
a:	nop
	.section	.rodata.str1.1,"aMS",@progbits,1
b:	.string "x"
	.pushsection .text._Z1fv,"axG",@progbits,_Z1fv,comdat
c:	ret
	.popsection
d:	.string "y"
	.data
	.previous
e:	.string "z"
	.section	.tbss,"awT",@nobits
f:	.zero 4
	.section	__patchable_function_entries,"awo",@progbits,g
	.section	.debug_info,"",@progbits
`
	f, err := ParseString(src)
	if err != nil {
		t.Fatal(err)
	}
	secOf := map[string]Section{}
	for _, s := range f.Stmts {
		if s.Kind == Label {
			secOf[s.Name] = f.Sections[s.Section]
		}
	}
	want := map[string]string{"a": ".text", "b": ".rodata.str1.1", "c": ".text._Z1fv", "d": ".rodata.str1.1", "e": ".rodata.str1.1", "f": ".tbss"}
	for l, name := range want {
		if secOf[l].Name != name {
			t.Errorf("label %s in %q, want %q", l, secOf[l].Name, name)
		}
	}
	if s := secOf["b"]; s.Entsize != "1" || s.Flags != "aMS" || s.Alloc() == false || s.Write() {
		t.Errorf("rodata.str1.1: %+v", s)
	}
	if s := secOf["c"]; s.Group != "_Z1fv" || !s.Comdat || !s.Exec() {
		t.Errorf("comdat text: %+v", s)
	}
	if s := secOf["f"]; !s.TLS() || !s.NoBits() {
		t.Errorf("tbss: %+v", s)
	}
	var found bool
	for _, s := range f.Sections {
		if s.Name == "__patchable_function_entries" {
			found = s.LinkedTo == "g"
		}
		if s.Name == ".debug_info" && (!s.Debug() || s.Alloc()) {
			t.Errorf(".debug_info: %+v", s)
		}
	}
	if !found {
		t.Error("linked-to symbol of an o section not read")
	}
	if _, err := ParseString("\t.popsection\n"); err == nil {
		t.Error("unbalanced .popsection accepted")
	}
	if _, err := ParseString("\t.string \"abc\n"); err == nil {
		t.Error("unterminated string accepted")
	}
}

func TestRefs(t *testing.T) {
	tests := []struct {
		args string
		want []string // name@modifier
	}{
		{"$.LC0, %edi", []string{".LC0"}},
		{"puts@PLT", []string{"puts@PLT"}},
		{"x@GOTPCREL(%rip), %rax", []string{"x@GOTPCREL"}},
		{"%fs:x@tpoff, %eax", []string{"x@tpoff"}},
		{"*.L4(,%rdi,8)", []string{".L4"}},
		{".L9-.L4", []string{".L9", ".L4"}},
		{"sw, .-sw", []string{"sw", "sw"}},
		{"sw, @function", []string{"sw"}},
		{"16+_ZL5gname(%rip)", []string{"_ZL5gname"}},
		{"1b", nil},
		{"0x1b,.LLSDA5", []string{".LLSDA5"}},
		{"\"a.b\", c", []string{"c"}},
		{"calls.1(%rip), %eax", []string{"calls.1"}},
		{"DW.ref._ZTIi-.", []string{"DW.ref._ZTIi"}},
		{"-8(%rbp)", nil},
		{"'a + b", []string{"b"}},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range Refs(tt.args, nil) {
			s := r.Name(tt.args)
			if m := r.Modifier(tt.args); m != "" {
				s += "@" + m
			}
			got = append(got, s)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Refs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	got := SplitArgs(` .text.x , "ax\",y" ,@progbits,,g(1,2) `)
	want := []string{".text.x", `"ax\",y"`, "@progbits", "", "g(1,2)"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SplitArgs = %q, want %q", got, want)
	}
	if FirstArg("a(b,c), d") != "a(b,c)" {
		t.Fatal("FirstArg")
	}
}

// TestParseAgreesWithAs parses real compiler output and checks the result
// against what GNU as makes of the same text: every symbol the object
// defines is a label in the section the object puts it in, and every
// allocated section has the flags the object gives it.
func TestParseAgreesWithAs(t *testing.T) {
	testutil.RequireGCC(t)
	srcs, err := filepath.Glob("testdata/corpus/*")
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, src := range srcs {
		for _, fs := range asmtest.FlagSets {
			src, fs := src, fs
			t.Run(filepath.Base(src)+"/"+fs.Name, func(t *testing.T) {
				t.Parallel()
				s := asmtest.CompileFile(t, src, fs.Flags)
				f, err := Parse(s)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				checkAgainstObject(t, f, asmtest.Assemble(t, s))
				lite, err := ParseWith(string(s), Options{SkipDebug: true})
				if err != nil {
					t.Fatal(err)
				}
				checkSkipDebug(t, f, lite)
			})
		}
	}
}

func checkAgainstObject(t *testing.T, f *File, obj string) {
	ef, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	labels := map[string]string{}
	commons := map[string]bool{}
	for _, s := range f.Stmts {
		if s.Kind == Label {
			if prev, dup := labels[s.Name]; dup && !IsNumericLabel(s.Name) {
				t.Errorf("label %s defined twice (%s)", s.Name, prev)
			}
			labels[s.Name] = f.Sections[s.Section].Name
		}
		if s.Kind == Directive && (s.Name == ".comm" || s.Name == ".lcomm") {
			commons[FirstArg(s.Args)] = true
		}
		if s.Kind == Instruction && !f.Sections[s.Section].Exec() {
			t.Errorf("line %d: instruction %q in non-code section %s", s.Line, s.Name, f.Sections[s.Section].Name)
		}
	}
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range syms {
		typ := elf.ST_TYPE(sym.Info)
		if sym.Section == elf.SHN_UNDEF || typ == elf.STT_SECTION || typ == elf.STT_FILE || sym.Name == "" {
			continue
		}
		if sym.Section == elf.SHN_COMMON || commons[sym.Name] {
			if !commons[sym.Name] {
				t.Errorf("common symbol %s has no .comm", sym.Name)
			}
			continue
		}
		if sym.Section == elf.SHN_ABS || int(sym.Section) >= len(ef.Sections) {
			continue
		}
		want := ef.Sections[sym.Section].Name
		got, ok := labels[sym.Name]
		if !ok {
			// Aliases made with .set have no label of their own.
			continue
		}
		if got != want {
			t.Errorf("symbol %s: parser puts it in %s, as in %s", sym.Name, got, want)
		}
	}
	byName := map[string]*Section{}
	for i := range f.Sections {
		byName[f.Sections[i].Name] = &f.Sections[i]
	}
	for _, es := range ef.Sections {
		if es.Flags&elf.SHF_ALLOC == 0 || es.Name == ".eh_frame" || es.Name == ".note.gnu.property" {
			continue
		}
		ps := byName[es.Name]
		if ps == nil && (es.Size == 0 || es.Name == ".bss" && len(commons) > 0) {
			// as always makes .text, .data and .bss, and puts local
			// commons in .bss.
			continue
		}
		if ps == nil {
			t.Errorf("section %s of the object is unknown to the parser", es.Name)
			continue
		}
		if ps.Exec() != (es.Flags&elf.SHF_EXECINSTR != 0) || ps.Write() != (es.Flags&elf.SHF_WRITE != 0) ||
			ps.TLS() != (es.Flags&elf.SHF_TLS != 0) || ps.NoBits() != (es.Type == elf.SHT_NOBITS) {
			t.Errorf("section %s: parser has flags %q type %s, object has %v %v", es.Name, ps.Flags, ps.Type, es.Flags, es.Type)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"\t.text\nf:\n\tmovl\t$5, %eax\n\tret\n",
		"\t.section .a,\"aw\"\n\t.pushsection .b\n\t.popsection\n\t.previous\n",
		"a: b: c = d\n\t.string \"x;#\"; nop # c\n/* x */\n",
		"\tdata16 leaq x@tlsgd(%rip), %rdi\n\t.value 0x6666\n\trex64\n",
	} {
		f.Add([]byte(seed))
	}
	// Real compiler output of the corpus, when a compiler is at hand, cut
	// to a size the fuzzer mutates quickly.
	if srcs, _ := filepath.Glob("testdata/corpus/*"); len(srcs) > 0 {
		if _, err := exec.LookPath("gcc"); err == nil {
			for _, src := range srcs {
				s := asmtest.CompileFile(f, src, []string{"-O2"})
				if len(s) > 8<<10 {
					s = s[:8<<10]
				}
				f.Add(s)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, _ := Parse(src)
		checkInvariants(t, file)
		lite, _ := ParseWith(string(src), Options{SkipDebug: true})
		checkInvariants(t, lite)
		checkSkipDebug(t, file, lite)
		for _, s := range file.Stmts {
			for _, r := range Refs(s.Args, nil) {
				if r.Off < 0 || r.End() > int32(len(s.Args)) || r.Len <= 0 {
					t.Fatalf("ref %+v out of %q", r, s.Args)
				}
			}
			SplitArgs(s.Args)
			ParseSectionArgs(s.Args)
		}
	})
}

// checkSkipDebug checks that parsing without debug sections gives the same
// statements as a full parse, minus those in debug sections.
func checkSkipDebug(t *testing.T, full, lite *File) {
	t.Helper()
	var want []Stmt
	for _, s := range full.Stmts {
		if !full.Sections[s.Section].Debug() || s.Kind == Directive && ClassOf(s.Name) == SectionSwitch {
			want = append(want, s)
		}
	}
	if len(want) != len(lite.Stmts) {
		t.Fatalf("SkipDebug kept %d statements, want %d", len(lite.Stmts), len(want))
	}
	for i := range want {
		if want[i] != lite.Stmts[i] {
			t.Fatalf("statement %d: %+v with SkipDebug, %+v without", i, lite.Stmts[i], want[i])
		}
	}
}

func checkInvariants(t *testing.T, f *File) {
	t.Helper()
	last := int32(0)
	for i, s := range f.Stmts {
		if s.Start < last || s.End < s.Start || int(s.End) > len(f.Src) {
			t.Fatalf("statement %d [%d,%d) overlaps or leaves the source", i, s.Start, s.End)
		}
		last = s.End
		if s.Section < 0 || int(s.Section) >= len(f.Sections) {
			t.Fatalf("statement %d in section %d of %d", i, s.Section, len(f.Sections))
		}
		if s.Name == "" {
			t.Fatalf("statement %d has no name", i)
		}
	}
}
