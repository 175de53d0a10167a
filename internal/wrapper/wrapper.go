// Package wrapper is the compiler wrapper that "hotpatch build" puts in
// place of cc, gcc, g++ and c++.
//
// For every C or C++ translation unit it asks the real compiler for
// assembly (-S) written where the object would go, so that every name the
// driver derives from the output (dependency files, -save-temps, aux
// files) is the one a plain build uses; keeps that assembly in the build
// state; and assembles it into the object the build expected. Assembling
// gcc's own assembly gives the very object gcc -c gives, so the original
// stage reproduces a plain build byte for byte. In the patched stage the
// kept original and the new assembly go through the differ, and the
// augmented assembly is assembled instead; links keep their relocations
// (-Wl,-q) for extraction.
//
// Outside a build (no HOTPATCH_STAGE) the wrapper runs the real compiler
// with the same arguments and nothing else.
package wrapper

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Differ compares the original and patched assembly of one translation
// unit and returns the augmented assembly (docs/augmented-assembly.md) and
// what changed. file names the translation unit in messages.
type Differ func(original, patched []byte, file string) (out []byte, changes []Change, err error)

// ErrLTO refuses link-time optimisation: with -flto the objects hold GIMPLE
// and the code is generated at link time, after the assembly a patch is
// built from.
var ErrLTO = errors.New("-flto is not supported in a patch build: link-time optimisation generates code at link time, after the assembly patches are built from; build without it (add -fno-lto to CFLAGS/CXXFLAGS)")

// ErrSplitDwarf refuses -gsplit-dwarf, whose .dwo files are written by the
// compile step the wrapper splits in two.
var ErrSplitDwarf = errors.New("-gsplit-dwarf is not supported in a patch build; build without it")

// envNested marks the environment of the real compiler, so that a wrapper
// reached again from it knows it would recurse.
const envNested = "HOTPATCH_CC_NESTED"

// ErrNoCompiler means the real compiler could not be found.
var ErrNoCompiler = errors.New("real compiler not found")

// FailedError is a failure the wrapper already explained on standard
// error; Status is the exit status the build should see.
type FailedError struct {
	Status int
	Reason string
}

func (e *FailedError) Error() string { return e.Reason }

// Wrapper is one invocation of the compiler wrapper.
type Wrapper struct {
	// Name is the name the wrapper was called by: cc, gcc, g++, c++,
	// hotpatch-cc.
	Name   string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv in production).
	Getenv func(string) string
	// Differ runs in the patched stage.
	Differ Differ
	// Self is this program's executable, so that a search of PATH for
	// the real compiler never finds the wrapper again.
	Self string
	// Dir is the working directory of the compilation ("" for the
	// process's own).
	Dir string
}

// IsCXXName reports whether a wrapper name stands for the C++ driver.
func IsCXXName(name string) bool {
	switch filepath.Base(name) {
	case "g++", "c++", "hotpatch-c++":
		return true
	}
	return false
}

// RealCompiler is the compiler command (program and leading arguments)
// the wrapper stands for.
func (w *Wrapper) RealCompiler() ([]string, error) {
	cxx := IsCXXName(w.Name)
	if w.Getenv(EnvStage) != "" {
		v := w.Getenv(EnvCC)
		if cxx {
			v = w.Getenv(EnvCXX)
		}
		if f := strings.Fields(v); len(f) > 0 {
			if !strings.ContainsRune(f[0], '/') {
				p, err := LookPathExcept(f[0], w.Getenv("PATH"), w.Self)
				if err != nil {
					return nil, err
				}
				f[0] = p
			}
			return f, nil
		}
	}
	want := filepath.Base(w.Name)
	switch want {
	case "hotpatch-cc", "hotpatch":
		want = "cc"
	case "hotpatch-c++":
		want = "c++"
	}
	p, err := LookPathExcept(want, w.Getenv("PATH"), w.Self)
	if err != nil {
		return nil, err
	}
	return []string{p}, nil
}

// LookPathExcept finds prog on path, skipping any candidate that is the
// file self (the wrapper, reached through a shim link) or a compiler
// cache that stands in for the compiler (/usr/lib/ccache/gcc): the
// wrapper must reach the compiler itself.
func LookPathExcept(prog, path, self string) (string, error) {
	var selfInfo os.FileInfo
	if self != "" {
		selfInfo, _ = os.Stat(self)
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		cand := filepath.Join(dir, prog)
		st, err := os.Stat(cand)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		if selfInfo != nil && os.SameFile(st, selfInfo) {
			continue
		}
		if IsCompilerCache(cand) {
			continue
		}
		return cand, nil
	}
	return "", fmt.Errorf("%w: no %s on PATH other than the wrapper itself or a compiler cache", ErrNoCompiler, prog)
}

// compilerCaches are the launchers that masquerade as a compiler through
// a link of the compiler's name.
var compilerCaches = map[string]bool{"ccache": true, "sccache": true, "distcc": true}

// IsCompilerCache reports whether path is, or links to, a compiler cache.
func IsCompilerCache(path string) bool {
	if compilerCaches[filepath.Base(path)] {
		return true
	}
	real, err := filepath.EvalSymlinks(path)
	return err == nil && compilerCaches[filepath.Base(real)]
}

// Run runs the wrapper with the compiler arguments args and returns the
// exit status the build should see. A non-nil error has been the reason
// for a non-zero status; the caller prints it.
func (w *Wrapper) Run(args []string) (int, error) {
	if w.Getenv(envNested) != "" {
		// The "real" compiler led back here: running on would fork
		// without end.
		return 1, fmt.Errorf("%w: the compiler the wrapper runs is the wrapper itself (check %s, %s and PATH)", ErrNoCompiler, EnvCC, EnvCXX)
	}
	real, err := w.RealCompiler()
	if err != nil {
		return 1, err
	}
	stage := Stage(w.Getenv(EnvStage))
	if stage == "" {
		return w.exec(real, args, true)
	}
	if stage != StageOriginal && stage != StagePatched {
		return 1, fmt.Errorf("%s=%q: want %q or %q", EnvStage, stage, StageOriginal, StagePatched)
	}
	stateDir := w.Getenv(EnvState)
	if stateDir == "" {
		return 1, fmt.Errorf("%s is set but %s is not", EnvStage, EnvState)
	}
	cwd := w.Dir
	if cwd == "" {
		if cwd, err = os.Getwd(); err != nil {
			return 1, err
		}
	}
	inv, err := ParseIn(cwd, args)
	if err != nil {
		return 1, err
	}
	r := &run{w: w, real: real, inv: inv, stage: stage, state: State{Dir: stateDir}, cwd: cwd}
	status, err := r.do()
	if err != nil {
		reason := err.Error()
		var fe *FailedError
		if errors.As(err, &fe) {
			reason = fe.Reason
		}
		_ = r.state.Append(stage, Record{Kind: KindFail, Pid: os.Getpid(), Dir: cwd, Error: reason})
		if status == 0 {
			status = 1
		}
	}
	return status, err
}

type run struct {
	w     *Wrapper
	real  []string
	inv   *Invocation
	stage Stage
	state State
	cwd   string
}

func (r *run) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(r.cwd, p)
}

func (r *run) record(rec Record) error {
	rec.Pid = os.Getpid()
	rec.Dir = r.cwd
	if rec.Kind == KindCompile || rec.Kind == KindLink {
		rec.Driver, rec.Args = filepath.Base(r.w.Name), r.inv.Args
	}
	return r.state.Append(r.stage, rec)
}

func (r *run) do() (int, error) {
	inv := r.inv
	switch inv.Mode {
	case ModeQuery, ModePreprocess, ModeAssembly:
		return r.passThrough(inv.Args)
	}
	if inv.LTO {
		return 1, ErrLTO
	}
	var compiled []Input
	for _, in := range inv.Inputs {
		if in.IsCompiled() {
			compiled = append(compiled, in)
		}
	}
	if r.isProbe() {
		return r.passThrough(inv.Args)
	}
	if len(compiled) == 0 {
		if inv.Mode == ModeLink {
			return r.link(inv.Args)
		}
		return r.passThrough(inv.Args)
	}
	if inv.SplitDwarf {
		return 1, ErrSplitDwarf
	}
	if inv.Mode == ModeCompile {
		return r.compileOnly()
	}
	return r.compileAndLink()
}

// isProbe recognises the throw-away compilations of configure scripts and
// build system feature checks. They run through the real compiler
// untouched: nothing of them ends up in a patch, and a configure check
// must see exactly the compiler a plain build sees.
func (r *run) isProbe() bool {
	paths := []string{r.cwd}
	if r.inv.Output != "" {
		paths = append(paths, r.abs(r.inv.Output))
	}
	for _, in := range r.inv.Inputs {
		paths = append(paths, r.abs(in.Path))
	}
	for _, p := range paths {
		if strings.HasPrefix(p, "/dev/") {
			return true
		}
		base := filepath.Base(p)
		if strings.HasPrefix(base, "conftest") {
			return true
		}
		for _, marker := range []string{"/CMakeFiles/CMakeTmp", "/CMakeFiles/CMakeScratch/", "/CompilerIdC", "/meson-private/"} {
			if strings.Contains(p, marker) {
				return true
			}
		}
	}
	return false
}

func (r *run) passThrough(args []string) (int, error) {
	_ = r.record(Record{Kind: KindPass})
	return r.w.exec(r.real, args, true)
}

// compileOnly handles -c: each C or C++ input becomes one object through
// assembly; other inputs (assembler sources) are compiled by the real
// compiler in one call, as gcc would.
func (r *run) compileOnly() (int, error) {
	inv := r.inv
	if inv.Output != "" && len(inv.Inputs) > 1 {
		// gcc refuses -o with several inputs; let it say so.
		return r.passThrough(inv.Args)
	}
	var others []Input
	for _, in := range inv.Inputs {
		if !in.IsCompiled() {
			others = append(others, in)
			continue
		}
		obj := inv.Output
		if obj == "" {
			obj = ObjectFor(in.Path)
		}
		if st, err := r.compileUnit(in, obj, r.abs(obj), false); st != 0 || err != nil {
			return st, err
		}
	}
	if len(others) > 0 {
		return r.w.exec(r.real, r.argsWithInputs(others), true)
	}
	return 0, nil
}

// argsWithInputs is the command line with only the given inputs, each
// preceded by its -x language so that dropping the others does not change
// how the rest are read.
func (r *run) argsWithInputs(keep []Input) []string {
	var out []string
	for i := 0; i < len(r.inv.Args); i++ {
		a := r.inv.Args[i]
		if r.isInputIndex(i) {
			continue
		}
		if a == "-x" {
			i++
			continue
		}
		if strings.HasPrefix(a, "-x") {
			continue
		}
		if optionsWithSeparateArg[a] && i+1 < len(r.inv.Args) {
			out = append(out, a, r.inv.Args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	for _, in := range keep {
		lang := in.Lang
		if lang == "" {
			lang = "none"
		}
		out = append(out, "-x", lang, in.Path)
	}
	return out
}

func (r *run) isInputIndex(i int) bool {
	for _, in := range r.inv.Inputs {
		if in.Index == i {
			return true
		}
	}
	return false
}

// compileUnit turns one C or C++ input into obj through kept assembly,
// kept under keyObj (the object's absolute path, or for the scratch object
// of a compile-and-link command, its output and source). inLink says the
// command also links, so link-only options are left out and the
// dependency file is named as gcc names it for such a command.
func (r *run) compileUnit(in Input, obj, keyObj string, inLink bool) (int, error) {
	src := in.Path
	srcAbs := src
	if src != "-" {
		srcAbs = r.abs(src)
	}
	// Step 1: assembly, written where the object goes.
	sArgs := r.unitArgs(in, obj, inLink)
	var errBuf bytes.Buffer
	st, err := r.w.execCapture(r.real, sArgs, in.Path == "-", &errBuf)
	if err != nil {
		return st, err
	}
	if st != 0 {
		return st, &FailedError{Status: st, Reason: compileErrorReason(displayName(srcAbs, r.cwd), errBuf.String())}
	}
	asm, err := os.ReadFile(r.abs(obj))
	if err != nil {
		return 1, fmt.Errorf("read assembly of %s: %w", src, err)
	}
	if err := os.Remove(r.abs(obj)); err != nil {
		return 1, fmt.Errorf("compile %s: %w", src, err)
	}

	// Step 2: keep it, and in the patched stage diff it.
	origPath := r.state.AsmPath(StageOriginal, keyObj)
	toAssemble := origPath
	var changes []Change
	switch r.stage {
	case StageOriginal:
		if err := writeFileAtomic(origPath, asm); err != nil {
			return 1, fmt.Errorf("keep assembly of %s: %w", src, err)
		}
	case StagePatched:
		orig, err := os.ReadFile(origPath)
		if errors.Is(err, os.ErrNotExist) {
			// A translation unit the original build did not have: the
			// differ sees an empty original and treats all of it as new.
			orig = nil
		} else if err != nil {
			return 1, fmt.Errorf("read original assembly of %s: %w", src, err)
		}
		if !bytes.Equal(orig, asm) || orig == nil {
			if r.w.Differ == nil {
				return 1, fmt.Errorf("compile %s: no differ configured", src)
			}
			out, ch, err := r.w.Differ(orig, asm, displayName(srcAbs, r.cwd))
			if err != nil {
				return 1, &FailedError{Status: 1, Reason: fmt.Sprintf("%s: %v", displayName(srcAbs, r.cwd), err)}
			}
			changes = ch
			toAssemble = r.state.AsmPath(StagePatched, keyObj)
			if err := writeFileAtomic(toAssemble, out); err != nil {
				return 1, fmt.Errorf("keep patched assembly of %s: %w", src, err)
			}
		}
	}
	if r.inv.SaveTemps != "" {
		if err := r.writeSaveTemps(obj, toAssemble); err != nil {
			return 1, err
		}
	}

	// Step 3: assemble into the object the build expects.
	aArgs := r.assembleArgs(toAssemble, obj, inLink)
	st, err = r.w.exec(r.real, aArgs, false)
	if err != nil || st != 0 {
		if err == nil {
			err = &FailedError{Status: st, Reason: fmt.Sprintf("assemble %s (from %s) failed with status %d", toAssemble, displayName(srcAbs, r.cwd), st)}
		}
		return st, err
	}
	return 0, r.record(Record{Kind: KindCompile, Source: srcAbs, Object: keyObj, Asm: toAssemble, Changes: changes})
}

// writeSaveTemps puts the assembly where -save-temps would have left it:
// beside the object (or in the working directory for -save-temps=cwd),
// named after the object.
func (r *run) writeSaveTemps(obj, asmPath string) error {
	base := strings.TrimSuffix(filepath.Base(obj), filepath.Ext(obj)) + ".s"
	dir := filepath.Dir(r.abs(obj))
	if r.inv.SaveTemps == "cwd" {
		dir = r.cwd
	}
	data, err := os.ReadFile(asmPath)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, base), data, 0o644)
}

func displayName(abs, cwd string) string {
	if rel, err := filepath.Rel(cwd, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

// compileErrorReason keeps the first diagnostic that says "error" as the
// one-line reason of a failed compilation.
func compileErrorReason(src, stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "error:") || strings.Contains(line, "Error:") {
			return fmt.Sprintf("compile error in %s: %s", src, strings.TrimSpace(line))
		}
	}
	return fmt.Sprintf("compile error in %s", src)
}

// unitArgs is the -S command for one input: every option of the original
// command, with -c replaced by -S and the output kept, so that the driver
// derives the same dump base, dependency file and target names.
func (r *run) unitArgs(in Input, obj string, inLink bool) []string {
	out := r.keptOptions(inLink, func(string) (bool, bool) { return false, false })
	if inLink && r.inv.DepFile {
		// gcc names the dependency file and target of a compile-and-link
		// command after its output; the per-source command must say so.
		if !r.inv.DepFileArg {
			out = append(out, "-MF", linkDepFile(r.inv.Output, in.Path))
		}
		if !r.inv.DepTargetGiven && r.inv.Output != "" {
			out = append(out, "-MQ", r.inv.Output)
		}
	}
	out = append(out, "-S", "-o", obj)
	if in.Lang != "" {
		out = append(out, "-x", in.Lang)
	}
	return append(out, in.Path)
}

// keptOptions copies the options of the original command that a per-unit
// command keeps: not the inputs, -c, the output or -x, nor (inLink) the
// options that only the link takes, nor what drop names. drop reports
// whether to leave an option out and whether its argument follows it.
func (r *run) keptOptions(inLink bool, drop func(a string) (leave, withArg bool)) []string {
	var out []string
	args := r.inv.Args
	for i := 0; i < len(args); i++ {
		a := args[i]
		if r.isInputIndex(i) || a == "-c" {
			continue
		}
		if a == "-o" || a == "--output" || a == "-x" {
			i++
			continue
		}
		if (strings.HasPrefix(a, "-o") && i == r.inv.OutputIndex) || strings.HasPrefix(a, "--output=") || strings.HasPrefix(a, "-x") {
			continue
		}
		if leave, withArg := drop(a); leave {
			if withArg {
				i++
			}
			continue
		}
		if inLink {
			if leave, next := linkOnlyOption(a); leave {
				if next {
					i++
				}
				continue
			}
		}
		if optionsWithSeparateArg[a] && i+1 < len(args) {
			out = append(out, a, args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}

func linkDepFile(output, input string) string {
	if output != "" {
		return strings.TrimSuffix(output, filepath.Ext(output)) + ".d"
	}
	base := filepath.Base(input)
	return strings.TrimSuffix(base, filepath.Ext(base)) + ".d"
}

// assembleArgs is the command that assembles kept assembly into obj: the
// original options (the driver derives the assembler's flags from them:
// --64, --gdwarf-5, -Wa,...) without inputs, outputs, languages and the
// options that only make sense while preprocessing.
func (r *run) assembleArgs(asmPath, obj string, inLink bool) []string {
	out := r.keptOptions(inLink, preprocessOnlyOption)
	return append(out, "-c", "-o", obj, "-x", "assembler", asmPath)
}

// preprocessOnlyOption names the dependency and save-temps options, which
// an assembler input would act on wrongly.
func preprocessOnlyOption(a string) (leave, withArg bool) {
	switch a {
	case "-MF", "-MT", "-MQ":
		return true, true
	case "-MD", "-MMD", "-MP", "-MG", "-save-temps", "--save-temps", "-save-temps=obj", "-save-temps=cwd":
		return true, false
	}
	if strings.HasPrefix(a, "-MF") || strings.HasPrefix(a, "-MT") || strings.HasPrefix(a, "-MQ") {
		return true, false
	}
	return false, false
}

// compileAndLink handles a command that compiles sources and links them:
// each source goes through assembly into an object of the state's scratch
// space, and the link gets those objects in the sources' places.
func (r *run) compileAndLink() (int, error) {
	tmp, err := os.MkdirTemp(mkdirAll(r.state.TempDir()), "link-")
	if err != nil {
		return 1, fmt.Errorf("link: %w", err)
	}
	defer os.RemoveAll(tmp)
	replaced := map[int]string{}
	for n, in := range r.inv.Inputs {
		if !in.IsCompiled() {
			continue
		}
		obj := filepath.Join(tmp, fmt.Sprintf("%d-%s", n, ObjectFor(in.Path)))
		// The kept assembly is keyed by the object path; name it after
		// the output and source instead, which are stable across builds.
		keyObj := r.abs(outputOrDefault(r.inv.Output)) + "@" + r.abs(in.Path)
		st, err := r.compileUnit(in, obj, keyObj, true)
		if st != 0 || err != nil {
			return st, err
		}
		replaced[in.Index] = obj
	}
	var link []string
	for i, a := range r.inv.Args {
		if obj, ok := replaced[i]; ok {
			link = append(link, obj)
			continue
		}
		link = append(link, a)
	}
	// Sources were dropped: clear any -x so the objects read as objects.
	link = stripLang(link)
	return r.link(link)
}

func mkdirAll(d string) string {
	_ = os.MkdirAll(d, 0o755)
	return d
}

func outputOrDefault(o string) string {
	if o == "" {
		return "a.out"
	}
	return o
}

// stripLang removes -x options: the inputs they applied to are objects now.
func stripLang(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-x" {
			i++
			continue
		}
		if strings.HasPrefix(args[i], "-x") {
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// link runs the link. The original stage keeps a copy of the output; the
// patched stage keeps relocations and pins .tm_clone_table.
func (r *run) link(args []string) (int, error) {
	out := r.abs(outputOrDefault(r.inv.Output))
	if r.stage == StagePatched && !r.inv.Relocatable {
		args = append(args, "-Wl,-q")
		if kept := r.state.KeptOutputPath(out); fileExists(kept) && !hasSection(kept, ".tm_clone_table") {
			script := r.state.TMCloneScriptPath()
			if !fileExists(script) {
				if err := writeFileAtomic(script, []byte(tmCloneScript)); err != nil {
					return 1, fmt.Errorf("link %s: %w", out, err)
				}
			}
			args = append(args, "-Wl,-T,"+script)
		}
	}
	var errBuf bytes.Buffer
	st, err := r.w.execCapture(r.real, args, false, &errBuf)
	if err != nil {
		return st, err
	}
	if st != 0 {
		return st, &FailedError{Status: st, Reason: linkErrorReason(out, errBuf.String())}
	}
	var inputs []string
	for _, in := range r.inv.Inputs {
		if !in.IsCompiled() {
			inputs = append(inputs, r.abs(in.Path))
		}
	}
	rec := Record{Kind: KindLink, Output: out, Inputs: inputs}
	if r.stage == StageOriginal {
		kept := r.state.KeptOutputPath(out)
		if err := copyFileAtomic(out, kept); err != nil {
			return 1, fmt.Errorf("keep a copy of %s: %w", out, err)
		}
		rec.Kept = kept
	}
	return 0, r.record(rec)
}

func linkErrorReason(out, stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "error") || strings.Contains(line, "undefined reference") {
			return fmt.Sprintf("link of %s failed: %s", out, strings.TrimSpace(line))
		}
	}
	return fmt.Sprintf("link of %s failed", out)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hasSection(path, name string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(name) != nil
}

// maxCommandLine is the length beyond which the wrapper hands arguments
// to the compiler through a response file, as a build that used @file
// did to stay under the kernel's limit.
const maxCommandLine = 96 << 10

func (w *Wrapper) exec(real, args []string, withStdin bool) (int, error) {
	return w.execCapture(real, args, withStdin, nil)
}

// execCapture runs the real compiler with the wrapper's standard streams,
// also copying its standard error to capture when non-nil.
func (w *Wrapper) execCapture(real, args []string, withStdin bool, capture *bytes.Buffer) (int, error) {
	full := append(append([]string{}, real[1:]...), args...)
	var rsp string
	if n := argsLen(full); n > maxCommandLine {
		f, err := os.CreateTemp("", "hotpatch-cc-*.rsp")
		if err != nil {
			return 1, err
		}
		rsp = f.Name()
		var b strings.Builder
		for _, a := range full {
			b.WriteString(QuoteResponseArg(a))
			b.WriteByte('\n')
		}
		if _, err := f.WriteString(b.String()); err != nil {
			f.Close()
			os.Remove(rsp)
			return 1, err
		}
		f.Close()
		defer os.Remove(rsp)
		full = []string{"@" + rsp}
	}
	cmd := exec.Command(real[0], full...)
	cmd.Dir = w.Dir
	cmd.Env = append(os.Environ(), envNested+"=1")
	if withStdin {
		cmd.Stdin = w.Stdin
	}
	cmd.Stdout = w.Stdout
	if capture != nil {
		cmd.Stderr = io.MultiWriter(w.Stderr, &limitedBuffer{b: capture, max: 64 << 10})
	} else {
		cmd.Stderr = w.Stderr
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code > 0 {
			return code, nil
		}
		return 1, nil
	}
	if err != nil {
		return 1, fmt.Errorf("run %s: %w", real[0], err)
	}
	return 0, nil
}

func argsLen(args []string) int {
	n := 0
	for _, a := range args {
		n += len(a) + 1
	}
	return n
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}
