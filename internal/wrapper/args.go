package wrapper

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Mode is what a compiler driver invocation is asked to produce.
type Mode int

const (
	// ModeLink compiles any sources and links an executable or library.
	ModeLink Mode = iota
	// ModeCompile is -c: one object per input.
	ModeCompile
	// ModeAssembly is -S: the user wants assembly, not an object.
	ModeAssembly
	// ModePreprocess is -E, or -M/-MM without -MD: no code is generated.
	ModePreprocess
	// ModeQuery is an invocation without inputs: --version, -dumpmachine,
	// -print-file-name=, -v alone.
	ModeQuery
)

func (m Mode) String() string {
	switch m {
	case ModeLink:
		return "link"
	case ModeCompile:
		return "compile"
	case ModeAssembly:
		return "assembly"
	case ModePreprocess:
		return "preprocess"
	case ModeQuery:
		return "query"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Input is one input file of a driver invocation.
type Input struct {
	// Path is as written on the command line; "-" is standard input.
	Path string
	// Lang is the language of an explicit -x that applies to it, or ""
	// when the driver decides by the file name suffix.
	Lang string
	// Index is the position of the input in Invocation.Args.
	Index int
}

// EffectiveLang is the language gcc compiles the input as: the -x language,
// or the one its suffix implies ("" for linker inputs).
func (in Input) EffectiveLang() string {
	if in.Lang != "" {
		return in.Lang
	}
	return langBySuffix(in.Path)
}

// IsCompiled reports whether gcc turns the input into assembly with cc1 or
// cc1plus: C and C++ sources, preprocessed or not. Those are the inputs the
// wrapper keeps assembly for; assembler sources, headers and linker inputs
// pass through.
func (in Input) IsCompiled() bool {
	switch in.EffectiveLang() {
	case "c", "c++", "cpp-output", "c++-cpp-output":
		return true
	}
	return false
}

// Invocation is a compiler driver command line, analysed.
type Invocation struct {
	// Args are the arguments with @response files expanded.
	Args []string
	Mode Mode
	// Inputs are the input files in command-line order, linker inputs
	// (objects, archives, -l is not one) included.
	Inputs []Input
	// Output is the -o argument, "" when absent.
	Output string
	// OutputIndex is the position of the -o option in Args (of "-o" when
	// separate, of "-oFILE" when joined), -1 when absent.
	OutputIndex int
	// LTO is set when link-time optimisation is in effect (the last of
	// -flto* and -fno-lto wins).
	LTO bool
	// SaveTemps is "", "cwd" or "obj".
	SaveTemps string
	// Relocatable is -r: a partial link that produces an object.
	Relocatable bool
	// DepFile reports -MD or -MMD, which write a dependency file while
	// compiling; DepFileArg and DepTargetGiven tell whether -MF and
	// -MT/-MQ came with it.
	DepFile        bool
	DepFileArg     bool
	DepTargetGiven bool
	// SplitDwarf is -gsplit-dwarf, whose .dwo side files the wrapper does
	// not reproduce.
	SplitDwarf bool
}

// ErrResponseFile wraps a problem with an @file argument.
var ErrResponseFile = errors.New("response file")

// optionsWithSeparateArg are gcc options whose value may be the next
// argument. Knowing them keeps an option's value from being taken for an
// input file.
var optionsWithSeparateArg = map[string]bool{
	"-o": true, "-x": true, "-I": true, "-D": true, "-U": true, "-include": true,
	"-imacros": true, "-idirafter": true, "-iprefix": true, "-iwithprefix": true,
	"-iwithprefixbefore": true, "-isystem": true, "-isysroot": true, "-imultilib": true,
	"-imultiarch": true, "-iquote": true, "-iplugindir": true, "-MF": true, "-MT": true,
	"-MQ": true, "-L": true, "-l": true, "-T": true, "-Xlinker": true, "-Xassembler": true,
	"-Xpreprocessor": true, "-u": true, "-z": true, "-e": true, "-aux-info": true,
	"-B": true, "--param": true, "-A": true, "-dumpbase": true, "-dumpdir": true,
	"-dumpbase-ext": true, "--sysroot": true, "-specs": true, "-G": true,
	"-Xplugin": true, "--output": true, "--include": true, "--entry": true,
	"-wrapper": true,
}

// Parse analyses a gcc or g++ command line (without the program name).
// Response files are expanded relative to the working directory, as gcc
// does.
func Parse(args []string) (*Invocation, error) { return ParseIn("", args) }

// ParseIn is Parse for a command run in dir ("" is the working
// directory).
func ParseIn(dir string, args []string) (*Invocation, error) {
	expanded, err := ExpandResponseFiles(dir, args, 0)
	if err != nil {
		return nil, err
	}
	inv := &Invocation{Args: expanded, OutputIndex: -1}
	var (
		lang                      string
		sawC, sawS, sawE, sawDeps bool
		sawMD, sawSyntax          bool
	)
	for i := 0; i < len(expanded); i++ {
		a := expanded[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			inv.Inputs = append(inv.Inputs, Input{Path: a, Lang: lang, Index: i})
			continue
		}
		// Options with a separate value: consume it here so that it is
		// never seen as an input.
		if optionsWithSeparateArg[a] {
			if i+1 >= len(expanded) {
				// gcc reports "missing argument"; let it.
				continue
			}
			val := expanded[i+1]
			switch a {
			case "-o", "--output":
				inv.Output, inv.OutputIndex = val, i
			case "-x":
				lang = normLang(val)
			case "-MF":
				inv.DepFileArg = true
			case "-MT", "-MQ":
				inv.DepTargetGiven = true
			}
			i++
			continue
		}
		switch {
		case a == "-c":
			sawC = true
		case a == "-S":
			sawS = true
		case a == "-E":
			sawE = true
		case a == "-fsyntax-only":
			sawSyntax = true
		case a == "-M" || a == "-MM":
			sawDeps = true
		case a == "-MD" || a == "-MMD":
			sawMD = true
		case strings.HasPrefix(a, "-MF"):
			inv.DepFileArg = true
		case strings.HasPrefix(a, "-MT") || strings.HasPrefix(a, "-MQ"):
			inv.DepTargetGiven = true
		case strings.HasPrefix(a, "-o"):
			inv.Output, inv.OutputIndex = a[2:], i
		case strings.HasPrefix(a, "--output="):
			inv.Output, inv.OutputIndex = strings.TrimPrefix(a, "--output="), i
		case strings.HasPrefix(a, "-x"):
			lang = normLang(a[2:])
		case a == "-flto" || strings.HasPrefix(a, "-flto="):
			inv.LTO = true
		case a == "-fno-lto":
			inv.LTO = false
		case a == "-save-temps" || a == "--save-temps" || a == "-save-temps=obj":
			inv.SaveTemps = "obj"
		case a == "-save-temps=cwd":
			inv.SaveTemps = "cwd"
		case a == "-r":
			inv.Relocatable = true
		case a == "-gsplit-dwarf":
			inv.SplitDwarf = true
		case a == "-gno-split-dwarf":
			inv.SplitDwarf = false
		}
	}
	inv.DepFile = sawMD
	switch {
	case sawE || (sawDeps && !sawMD) || sawSyntax:
		inv.Mode = ModePreprocess
	case sawS:
		inv.Mode = ModeAssembly
	case sawC:
		inv.Mode = ModeCompile
	case len(inv.Inputs) == 0:
		inv.Mode = ModeQuery
	default:
		inv.Mode = ModeLink
	}
	return inv, nil
}

// normLang maps -x values to the names langBySuffix uses; "none" means
// "by suffix again".
func normLang(l string) string {
	if l == "none" {
		return ""
	}
	return l
}

func langBySuffix(path string) string {
	if path == "-" {
		return ""
	}
	ext := filepath.Ext(path)
	switch ext {
	case ".c":
		return "c"
	case ".i":
		return "cpp-output"
	case ".ii":
		return "c++-cpp-output"
	case ".cc", ".cp", ".cxx", ".cpp", ".CPP", ".c++", ".C":
		return "c++"
	case ".h":
		return "c-header"
	case ".hh", ".H", ".hp", ".hxx", ".hpp", ".HPP", ".h++", ".tcc":
		return "c++-header"
	case ".s":
		return "assembler"
	case ".S", ".sx":
		return "assembler-with-cpp"
	}
	return ""
}

// ObjectFor is the object file gcc -c writes for input when -o is absent:
// the input's base name with its suffix replaced by .o, in the working
// directory ("-.o" for standard input).
func ObjectFor(input string) string {
	if input == "-" {
		return "-.o"
	}
	base := filepath.Base(input)
	return strings.TrimSuffix(base, filepath.Ext(base)) + ".o"
}

// maxResponseDepth bounds nested @file expansion, as gcc bounds it, so a
// file that includes itself is an error rather than a hang.
const maxResponseDepth = 16

// ExpandResponseFiles replaces each @FILE argument by the arguments FILE
// holds, recursively, with gcc's (libiberty's) quoting rules. An @FILE that
// does not name a readable file stays as it is, as gcc keeps it.
func ExpandResponseFiles(dir string, args []string, depth int) ([]string, error) {
	var out []string
	for _, a := range args {
		if len(a) < 2 || a[0] != '@' {
			out = append(out, a)
			continue
		}
		name := a[1:]
		if dir != "" && !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			out = append(out, a)
			continue
		}
		if depth >= maxResponseDepth {
			return nil, fmt.Errorf("%w %s: nested more than %d levels deep (does it include itself?)", ErrResponseFile, a[1:], maxResponseDepth)
		}
		inner, err := ExpandResponseFiles(dir, SplitResponseFile(string(data)), depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, inner...)
	}
	return out, nil
}

// SplitResponseFile splits the text of a response file into arguments:
// white space separates them, single and double quotes group, and a
// backslash escapes the next character, as libiberty's buildargv does.
func SplitResponseFile(s string) []string {
	var (
		out     []string
		cur     strings.Builder
		inArg   bool
		squote  bool
		dquote  bool
		escaped bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			cur.WriteByte(c)
			escaped = false
		case c == '\\':
			escaped, inArg = true, true
		case squote:
			if c == '\'' {
				squote = false
			} else {
				cur.WriteByte(c)
			}
		case dquote:
			if c == '"' {
				dquote = false
			} else {
				cur.WriteByte(c)
			}
		case c == '\'':
			squote, inArg = true, true
		case c == '"':
			dquote, inArg = true, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if inArg {
				out = append(out, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		out = append(out, cur.String())
	}
	return out
}

// QuoteResponseArg quotes one argument for a response file so that
// SplitResponseFile (and gcc) read it back unchanged.
func QuoteResponseArg(a string) string {
	if a == "" {
		return "''"
	}
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch c {
		case ' ', '\t', '\n', '\r', '\v', '\f', '\'', '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// linkOnlyOption reports whether an option matters only to the link step,
// so that it is left out when the wrapper compiles a source of a
// compile-and-link command on its own.
func linkOnlyOption(a string) (drop bool, takesNext bool) {
	switch a {
	case "-l", "-L", "-T", "-Xlinker", "-u", "-z", "-e", "--entry":
		return true, true
	case "-shared", "-static", "-static-pie", "-pie", "-no-pie", "-rdynamic", "-s",
		"-nostdlib", "-nostartfiles", "-nodefaultlibs", "-nolibc", "-r",
		"-static-libgcc", "-shared-libgcc", "-static-libstdc++", "-symbolic":
		return true, false
	}
	for _, p := range []string{"-l", "-L", "-Wl,", "-T", "--entry="} {
		if strings.HasPrefix(a, p) {
			return true, false
		}
	}
	return false, false
}
