package wrapper

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseModesAndInputs(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		mode     Mode
		inputs   []string
		compiled []bool
		output   string
	}{
		{"compile", []string{"-O2", "-g", "-c", "a.c", "-o", "a.o"}, ModeCompile, []string{"a.c"}, []bool{true}, "a.o"},
		{"several sources no -o", []string{"-c", "a.c", "b.cc", "c.S"}, ModeCompile, []string{"a.c", "b.cc", "c.S"}, []bool{true, true, false}, ""},
		{"joined -o", []string{"-c", "-oout/a.o", "a.c"}, ModeCompile, []string{"a.c"}, []bool{true}, "out/a.o"},
		{"stdin with -x", []string{"-x", "c", "-c", "-", "-o", "s.o"}, ModeCompile, []string{"-"}, []bool{true}, "s.o"},
		{"-x none resets", []string{"-xc", "foo.txt", "-x", "none", "bar.o"}, ModeLink, []string{"foo.txt", "bar.o"}, []bool{true, false}, ""},
		{"option values are not inputs", []string{"-I", "inc", "-include", "cfg.h", "-MF", "a.d", "-MT", "a.o", "-c", "a.c"}, ModeCompile, []string{"a.c"}, []bool{true}, ""},
		{"link", []string{"main.o", "-L.", "-lfoo", "-o", "prog"}, ModeLink, []string{"main.o"}, []bool{false}, "prog"},
		{"compile and link", []string{"-O2", "a.c", "b.o", "-o", "prog"}, ModeLink, []string{"a.c", "b.o"}, []bool{true, false}, "prog"},
		{"preprocess", []string{"-E", "a.c"}, ModePreprocess, []string{"a.c"}, []bool{true}, ""},
		{"deps only", []string{"-MM", "a.c"}, ModePreprocess, []string{"a.c"}, []bool{true}, ""},
		{"deps while compiling", []string{"-MD", "-c", "a.c"}, ModeCompile, []string{"a.c"}, []bool{true}, ""},
		{"assembly", []string{"-S", "a.c"}, ModeAssembly, []string{"a.c"}, []bool{true}, ""},
		{"query", []string{"--version"}, ModeQuery, nil, nil, ""},
		{"print", []string{"-print-file-name=libc.so"}, ModeQuery, nil, nil, ""},
		{"preprocessed", []string{"-c", "a.i", "b.ii"}, ModeCompile, []string{"a.i", "b.ii"}, []bool{true, true}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := Parse(c.args)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Mode != c.mode {
				t.Errorf("mode = %v, want %v", inv.Mode, c.mode)
			}
			var got []string
			var comp []bool
			for _, in := range inv.Inputs {
				got = append(got, in.Path)
				comp = append(comp, in.IsCompiled())
				if inv.Args[in.Index] != in.Path {
					t.Errorf("input %s: Index %d points at %q", in.Path, in.Index, inv.Args[in.Index])
				}
			}
			if !reflect.DeepEqual(got, c.inputs) || !reflect.DeepEqual(comp, c.compiled) {
				t.Errorf("inputs = %q compiled %v, want %q %v", got, comp, c.inputs, c.compiled)
			}
			if inv.Output != c.output {
				t.Errorf("output = %q, want %q", inv.Output, c.output)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	inv, _ := Parse([]string{"-flto", "-c", "a.c"})
	if !inv.LTO {
		t.Error("-flto not seen")
	}
	inv, _ = Parse([]string{"-flto=auto", "-fno-lto", "-c", "a.c"})
	if inv.LTO {
		t.Error("-fno-lto after -flto=auto should turn LTO off")
	}
	inv, _ = Parse([]string{"-save-temps=cwd", "-c", "a.c"})
	if inv.SaveTemps != "cwd" {
		t.Errorf("SaveTemps = %q", inv.SaveTemps)
	}
	inv, _ = Parse([]string{"-MMD", "-MF", "x.d", "-MQ", "x.o", "-c", "a.c"})
	if !inv.DepFile || !inv.DepFileArg || !inv.DepTargetGiven {
		t.Errorf("dependency flags: %+v", inv)
	}
	inv, _ = Parse([]string{"-r", "a.o", "b.o", "-o", "ab.o"})
	if !inv.Relocatable || inv.Mode != ModeLink {
		t.Errorf("partial link: %+v", inv)
	}
}

func TestResponseFiles(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "inner.rsp")
	outer := filepath.Join(dir, "outer.rsp")
	if err := os.WriteFile(inner, []byte("-DNAME=\"two words\" 'single quoted' back\\ slash\n-c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outer, []byte("-O2 @"+inner+"\n  a.c\t-o a.o"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := Parse([]string{"@" + outer, "@missing-file"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-O2", "-DNAME=two words", "single quoted", "back slash", "-c", "a.c", "-o", "a.o", "@missing-file"}
	if !reflect.DeepEqual(inv.Args, want) {
		t.Fatalf("expanded = %q\nwant %q", inv.Args, want)
	}
	if inv.Mode != ModeCompile || inv.Output != "a.o" || len(inv.Inputs) != 4 {
		t.Fatalf("parsed %+v", inv)
	}

	loop := filepath.Join(dir, "loop.rsp")
	if err := os.WriteFile(loop, []byte("@"+loop), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]string{"@" + loop}); err == nil {
		t.Fatal("a response file that includes itself was accepted")
	}
}

func TestQuoteResponseArgRoundTrip(t *testing.T) {
	args := []string{"", "plain", "two words", `quote"d`, "it's", `back\slash`, "tab\there", "new\nline"}
	var text string
	for _, a := range args {
		text += QuoteResponseArg(a) + "\n"
	}
	got := SplitResponseFile(text)
	if !reflect.DeepEqual(got, args) {
		t.Fatalf("round trip: got %q want %q", got, args)
	}
}

func FuzzSplitResponseFile(f *testing.F) {
	f.Add("-O2 -g 'a b' \"c d\" e\\ f")
	f.Add("")
	f.Add("\\")
	f.Add("'unterminated")
	f.Fuzz(func(t *testing.T, s string) {
		args := SplitResponseFile(s)
		var text string
		for _, a := range args {
			text += QuoteResponseArg(a) + " "
		}
		if again := SplitResponseFile(text); !reflect.DeepEqual(again, args) && len(args) > 0 {
			t.Fatalf("quote/split round trip changed %q into %q", args, again)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add("-O2 -c a.c -o a.o")
	f.Add("-x c - -o")
	f.Add("-MF")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := Parse(SplitResponseFile(s))
		if err != nil {
			return
		}
		for _, in := range inv.Inputs {
			if in.Index < 0 || in.Index >= len(inv.Args) || inv.Args[in.Index] != in.Path {
				t.Fatalf("input %+v does not point into %q", in, inv.Args)
			}
		}
	})
}
