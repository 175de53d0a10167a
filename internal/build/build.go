// Package build is the driver behind "hotpatch build": it runs a project's
// own build twice through the compiler wrapper, once on the original
// sources and once with the diffs applied, checks that the patched links
// kept the original layout, and extracts one patch file per changed
// executable or shared library.
//
// The build runs in the source tree itself, so that paths recorded in
// debug information, and with them the objects, are those of a plain
// build. The tree is put back afterwards: the sources the diffs touched
// are restored, and the build runs once more in the original stage so
// that the objects and binaries in the tree are the original ones again.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/extract"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/version"
	"github.com/hotpatch/hotpatch/internal/wrapper"
)

// Options describe one patch build.
type Options struct {
	// SrcDir is the source tree; the build command runs there.
	SrcDir string
	// OutDir receives the patch files (default SrcDir/patchroot).
	OutDir string
	// Diffs are applied in order, as patch -p1 would.
	Diffs []string
	// Command is the build command (default: make, with -j Jobs).
	Command []string
	Jobs    int

	ID          string
	Level       uint32
	Description string
	// Targets are deployed binaries the original stage must reproduce.
	Targets []string
	// ExactLines compiles the patched stage with the line numbers of the
	// patched files. By default unchanged lines keep their original
	// numbers (lines.go), so that __LINE__ moves no function.
	ExactLines bool

	// Self is the hotpatch executable the shims link to.
	Self string
	// Env is the environment the build runs in (os.Environ()).
	Env []string
	// Progress, when set, is called as the build advances.
	Progress func(Progress)
	// Now is the clock for the patch creation time when
	// SOURCE_DATE_EPOCH is unset.
	Now func() time.Time
}

// Progress is a snapshot of what the build is doing.
type Progress struct {
	// Stage is "original", "patched", "extract" or "restore".
	Stage string
	// Compiled counts translation units compiled in the stage so far;
	// Invocations counts every wrapper invocation.
	Compiled    int
	Invocations int
	// Reused is set when the original stage is taken from the cache.
	Reused bool
	// Done is set on the last report of a stage.
	Done bool
}

// Result is what a successful build produced.
type Result struct {
	Patches []Patch
	// LogPath is the full log of the build commands.
	LogPath string
	// ReusedOriginal is set when the original stage of an earlier build
	// was reused.
	ReusedOriginal bool
	// OriginalCompiles and PatchedCompiles count the translation units
	// compiled in each stage of this run.
	OriginalCompiles, PatchedCompiles int
	// Warnings are problems that did not stop the build, such as a
	// restoring rebuild that failed.
	Warnings []string
	// Notes are what the user should know about how the build went,
	// such as a --target matched by its contents.
	Notes []string
}

// Patch is one patch file written.
type Patch struct {
	Path      string
	Target    string // the linked output, as the build wrote it
	BuildID   string
	Functions []string
	// Warnings are extraction's: the patch was written, but applying it
	// will be refused (a function with no room for the jump).
	Warnings []string
}

// StageError is a failed build command; Reason is the first failure the
// wrapper recorded, or the command's exit status.
type StageError struct {
	Stage  string
	Reason string
	Log    string
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s stage failed: %s (full log: %s)", e.Stage, e.Reason, e.Log)
}

// ErrNoChanges means that no linked output of the patched build had patch
// sections: the diffs changed no code.
var ErrNoChanges = errors.New("the diffs changed no function or variable of any linked executable or library; no patch written")

// ErrNothingCompiled means that no compilation went through the wrapper.
var ErrNothingCompiled = errors.New("the original stage compiled nothing through the compiler wrapper")

// stateName is the folder, under SRCDIR/patchroot, that holds the kept
// assembly, the original outputs, the journals, the shims and the log. It
// lives in the tree so that the cache follows the tree.
const stateName = ".hotpatch"

// Run performs the build.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	d, err := newDriver(o)
	if err != nil {
		return nil, err
	}
	defer d.log.Close()
	res = &Result{LogPath: d.logPath}
	err = d.run(ctx, res)
	return res, err
}

type driver struct {
	o       Options
	src     string
	out     string
	stateD  string
	state   wrapper.State
	shim    string
	env     []string
	log     *os.File
	logPath string
	diffs   []string
	// plainEnv is env for a wrapper run outside the namespace; prefix
	// runs a build command inside it (nil without interception, for the
	// reason in noIntercept).
	plainEnv    []string
	prefix      []string
	noIntercept string
	notes       []string
	stamp       *stampKeeper
}

func newDriver(o Options) (*driver, error) {
	src, err := filepath.Abs(o.SrcDir)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("source tree %s: not a directory", o.SrcDir)
	}
	out := o.OutDir
	if out == "" {
		out = filepath.Join(src, "patchroot")
	}
	if out, err = filepath.Abs(out); err != nil {
		return nil, err
	}
	if len(o.Diffs) == 0 {
		return nil, errors.New("no diff given")
	}
	var diffs []string
	for _, df := range o.Diffs {
		a, err := filepath.Abs(df)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(a); err != nil {
			return nil, fmt.Errorf("diff %s: %w", df, err)
		}
		diffs = append(diffs, a)
	}
	if o.Self == "" {
		return nil, errors.New("build: the path of the hotpatch executable is needed for the compiler shims")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	stateD := filepath.Join(src, "patchroot", stateName)
	if err := os.MkdirAll(stateD, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(stateD, "build.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	d := &driver{o: o, src: src, out: out, stateD: stateD, state: wrapper.State{Dir: stateD}, log: log, logPath: logPath, diffs: diffs,
		stamp: &stampKeeper{path: filepath.Join(src, debhelperStamp)}}
	return d, nil
}

func (d *driver) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "hotpatch: "+format+"\n", args...)
}

func (d *driver) progress(p Progress) {
	if d.o.Progress != nil {
		d.o.Progress(p)
	}
}

func (d *driver) run(ctx context.Context, res *Result) (err error) {
	backupDir := filepath.Join(d.stateD, "backup")
	if b, err := loadBackup(d.src, backupDir); err != nil {
		return err
	} else if b != nil {
		d.logf("restoring sources left patched by an interrupted build")
		if err := b.restore(); err != nil {
			return err
		}
		res.Warnings = append(res.Warnings, "restored the sources an interrupted earlier build had left patched")
		_ = os.Remove(d.cachePath())
	}
	replayDir := filepath.Join(d.stateD, "replay")
	if rb, err := loadReplayBackup(replayDir); err != nil {
		return err
	} else if rb != nil {
		d.logf("restoring build files an interrupted build had rewritten")
		if err := rb.restore(); err != nil {
			return err
		}
		_ = os.Remove(d.cachePath())
	}
	if err := d.setupShims(); err != nil {
		return err
	}
	res.Notes = append(res.Notes, d.notes...)
	command := d.command()

	// Original stage, or the cached one.
	fp, err := treeFingerprint(d.src, d.skipDirs())
	if err != nil {
		return err
	}
	cacheKey := d.cacheKey(fp)
	if d.cacheValid(cacheKey) {
		res.ReusedOriginal = true
		d.logf("reusing the original stage of an earlier build: the tree is as that build left it")
		d.progress(Progress{Stage: "original", Reused: true})
	} else {
		if err := d.originalStage(ctx, command); err != nil {
			return err
		}
		compiles, _ := d.state.CountRecords(wrapper.StageOriginal)
		res.OriginalCompiles = compiles
		if compiles == 0 {
			if d.prefix == nil {
				return fmt.Errorf("%w: does the build call the compiler by an absolute path (CC=/usr/bin/gcc in a Makefile or a configured CMake or Meson folder)? hotpatch could not cover the compiler's own file: %s; reconfigure with CC=gcc, or give a build command that honours CC and CXX (log: %s)", ErrNothingCompiled, d.noIntercept, d.logPath)
			}
			return fmt.Errorf("%w: was the tree built already, with a stamp file that keeps the build command from compiling again (debian/rules' build-stamp)? Run the build's clean step first. Or does it use a compiler other than %s and %s? (log: %s)", ErrNothingCompiled, envValue(d.plainEnv, wrapper.EnvCC), envValue(d.plainEnv, wrapper.EnvCXX), d.logPath)
		}
		if err := d.saveCache(); err != nil {
			return err
		}
	}
	outputs, err := d.originalOutputs()
	if err != nil {
		return err
	}
	targets := map[string][]*originalOutput{}
	for _, t := range d.o.Targets {
		o, err := checkTarget(t, outputs, d.o.Env)
		if err != nil {
			return err
		}
		if !bytes.Equal(o.BuildID, o.DeployedID) {
			res.Notes = append(res.Notes, fmt.Sprintf("%s has build-id %x, the build made %s with %x: everything the loader maps is the same, so its patch is keyed to %x", t, o.DeployedID, o.Path, o.BuildID, o.DeployedID))
		}
		targets[o.Path] = append(targets[o.Path], o)
	}

	// Patched stage, always followed by restoring the tree.
	var files []string
	for _, df := range d.diffs {
		data, err := os.ReadFile(df)
		if err != nil {
			return fmt.Errorf("read diff: %w", err)
		}
		files = append(files, diffFiles(data)...)
	}
	b, err := newBackup(d.src, backupDir, dedupe(files))
	if err != nil {
		return err
	}
	patchedRan := false
	rb := newReplayBackup(replayDir)
	defer func() {
		rerr := d.restore(ctx, b, rb, patchedRan, res)
		if err == nil && rerr != nil {
			err = rerr
		}
	}()
	for _, df := range d.diffs {
		if err := applyDiff(ctx, d.src, df, d.log); err != nil {
			return err
		}
	}
	if !d.o.ExactLines {
		if err := stabilizeLines(b, d.log); err != nil {
			return err
		}
	}
	patchedRan = true
	if err := d.patchedStage(ctx, command); err != nil {
		return err
	}
	notes, err := d.recompileMissed(ctx, dedupe(files), rb)
	res.Notes = append(res.Notes, notes...)
	if err != nil {
		return err
	}
	res.PatchedCompiles, _ = d.state.CountRecords(wrapper.StagePatched)
	d.progress(Progress{Stage: "extract"})
	patches, err := d.extractAll(outputs, targets)
	if err != nil {
		return err
	}
	if len(patches) == 0 {
		return ErrNoChanges
	}
	res.Warnings = append(res.Warnings, runningWarnings(patches, outputs)...)
	res.Patches = patches
	for _, p := range patches {
		res.Warnings = append(res.Warnings, p.Warnings...)
	}
	return nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// restore puts the sources back and, when the patched stage ran, rebuilds
// what it changed in the original stage, so that the objects and binaries
// in the tree are those of the original sources again. On cancellation it
// only restores the sources: their fresh mtimes make the next build
// recompile what is stale.
func (d *driver) restore(ctx context.Context, b *backup, rb *replayBackup, patchedRan bool, res *Result) error {
	d.progress(Progress{Stage: "restore"})
	if err := b.restore(); err != nil {
		return err
	}
	// Before the build runs again: the files hotpatch compiled and linked
	// in the build's place are ones the build would not redo.
	if err := rb.restore(); err != nil {
		return err
	}
	if !patchedRan {
		return d.saveCache()
	}
	if ctx.Err() != nil {
		res.Warnings = append(res.Warnings, "interrupted: sources restored; run the build again to rebuild the objects the patched stage changed")
		return nil
	}
	command, err := d.incremental(d.command())
	if err == nil {
		err = d.runStage(context.WithoutCancel(ctx), wrapper.StageOriginal, command, "restore", true)
	}
	if perr := d.stamp.putBack(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("rebuilding the original objects after the patched stage failed (%v); run the build again", err))
		return nil
	}
	return d.saveCache()
}

func (d *driver) command() []string {
	if len(d.o.Command) > 0 {
		return d.o.Command
	}
	c := []string{"make"}
	if d.o.Jobs > 0 {
		c = append(c, "-j", strconv.Itoa(d.o.Jobs))
	}
	return c
}

func (d *driver) skipDirs() []string {
	return []string{filepath.Join(d.src, "patchroot"), d.out, filepath.Join(d.src, ".git")}
}

// setupShims links cc, gcc, g++, c++ and hotpatch-cc to this executable
// in a folder that goes first on PATH, and resolves the real compilers
// the shims stand for before that folder hides them.
func (d *driver) setupShims() error {
	d.shim = filepath.Join(d.stateD, "bin")
	if err := os.MkdirAll(d.shim, 0o755); err != nil {
		return err
	}
	for _, n := range []string{"cc", "gcc", "g++", "c++", "hotpatch-cc"} {
		p := filepath.Join(d.shim, n)
		if cur, err := os.Readlink(p); err == nil && cur == d.o.Self {
			continue
		}
		_ = os.Remove(p)
		if err := os.Symlink(d.o.Self, p); err != nil {
			return fmt.Errorf("compiler shim: %w", err)
		}
	}
	path := envValue(d.o.Env, "PATH")
	realCC, ccArgs, err := resolveCompiler(envValue(d.o.Env, "CC"), "gcc", path, d.o.Self)
	if err != nil {
		return err
	}
	realCXX, cxxArgs, err := resolveCompiler(envValue(d.o.Env, "CXX"), "g++", path, d.o.Self)
	if err != nil {
		return err
	}
	var env []string
	for _, kv := range d.o.Env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "CC", "CXX", wrapper.EnvStage, wrapper.EnvState, wrapper.EnvCC, wrapper.EnvCXX, "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"PATH="+d.shim+string(os.PathListSeparator)+path,
		"CC="+strings.Join(append([]string{filepath.Join(d.shim, "gcc")}, ccArgs...), " "),
		"CXX="+strings.Join(append([]string{filepath.Join(d.shim, "g++")}, cxxArgs...), " "),
		wrapper.EnvState+"="+d.stateD,
		wrapper.EnvCC+"="+realCC,
		wrapper.EnvCXX+"="+realCXX,
		// A cache hit hands the build an object the wrapper never saw.
		"CCACHE_DISABLE=1",
	)
	if onPath("ccache", path) || wrapper.IsCompilerCache(realCC) {
		d.notes = append(d.notes, "ccache is turned off for this build (CCACHE_DISABLE=1): an object from its cache would bypass the compiler wrapper")
	}
	d.env, d.plainEnv = env, env
	ic, why, err := d.setupIntercept(realCC, realCXX)
	if err != nil {
		return err
	}
	if ic == nil {
		d.noIntercept = why
		return nil
	}
	d.prefix = ic.prefix
	d.env = ic.env(env, ccArgs, cxxArgs)
	return nil
}

func onPath(prog, path string) bool {
	for _, dir := range filepath.SplitList(path) {
		if st, err := os.Stat(filepath.Join(dir, prog)); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}

// resolveCompiler splits a CC/CXX value into the compiler (as an absolute
// path) and its leading arguments, defaulting to def.
func resolveCompiler(value, def, path, self string) (string, []string, error) {
	f := strings.Fields(value)
	if len(f) == 0 {
		f = []string{def}
	}
	prog := f[0]
	if !strings.ContainsRune(prog, '/') {
		p, err := wrapper.LookPathExcept(prog, path, self)
		if err != nil {
			return "", nil, err
		}
		prog = p
	}
	return prog, f[1:], nil
}

func (d *driver) cachePath() string { return filepath.Join(d.stateD, "original.json") }

func (d *driver) cacheKey(fingerprint string) string {
	h := sha256.New()
	// The user's command, not the effective one: "make -j 2" and "make"
	// build the same original.
	fmt.Fprintf(h, "%s\x00%q\x00%s\x00", version.Version, d.o.Command, fingerprint)
	// A rebuilt hotpatch may keep assembly differently: its own identity
	// is part of the key.
	if st, err := os.Stat(d.o.Self); err == nil {
		fmt.Fprintf(h, "%d\x00%d\x00", st.Size(), st.ModTime().UnixNano())
	}
	for _, k := range []string{"CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "SOURCE_DATE_EPOCH"} {
		fmt.Fprintf(h, "%s=%s\x00", k, envValue(d.o.Env, k))
	}
	return hex.EncodeToString(h.Sum(nil))
}

type cacheRecord struct {
	Key string `json:"key"`
}

// cacheValid reports whether the original stage kept in the state fits
// the tree as it is now.
func (d *driver) cacheValid(key string) bool {
	data, err := os.ReadFile(d.cachePath())
	if err != nil {
		return false
	}
	var c cacheRecord
	if json.Unmarshal(data, &c) != nil || c.Key != key {
		return false
	}
	recs, err := d.state.ReadJournal(wrapper.StageOriginal)
	return err == nil && len(recs) > 0
}

// saveCache records the tree as the restored build left it: a later build
// that finds the tree unchanged can skip the original stage.
func (d *driver) saveCache() error {
	fp, err := treeFingerprint(d.src, d.skipDirs())
	if err != nil {
		return err
	}
	data, _ := json.Marshal(cacheRecord{Key: d.cacheKey(fp)})
	return os.WriteFile(d.cachePath(), data, 0o644)
}

func (d *driver) originalStage(ctx context.Context, command []string) error {
	_ = os.Remove(d.cachePath())
	for _, sub := range []string{"asm", "outputs", "journal", "tmp"} {
		if err := os.RemoveAll(filepath.Join(d.stateD, sub)); err != nil {
			return err
		}
	}
	// A tree built before must still compile every translation unit
	// through the wrapper: make every source newer than its object.
	if err := touchSources(d.src, d.skipDirs(), d.o.Now()); err != nil {
		return err
	}
	return d.runStage(ctx, wrapper.StageOriginal, command, "original", false)
}

func (d *driver) patchedStage(ctx context.Context, command []string) error {
	_ = os.Remove(d.state.JournalPath(wrapper.StagePatched))
	_ = os.RemoveAll(filepath.Join(d.stateD, "asm", string(wrapper.StagePatched)))
	command, err := d.incremental(command)
	if err != nil {
		return err
	}
	return d.runStage(ctx, wrapper.StagePatched, command, "patched", false)
}

// incremental is the command for the patched stage and the restore: the
// build command, or for dpkg-buildpackage, its build target without the
// clean step.
func (d *driver) incremental(command []string) ([]string, error) {
	inc := dpkgIncremental(command)
	if inc == nil {
		return command, nil
	}
	if err := d.stamp.remove(); err != nil {
		return nil, fmt.Errorf("take away dh's build stamp for an incremental build: %w", err)
	}
	d.logf("dpkg-buildpackage: this run builds only what changed (%s, without the clean step)", strings.Join(inc, " "))
	return inc, nil
}

// runStage runs the build command with the wrapper in a stage. label names
// the stage in progress and messages ("restore" runs in the original
// stage).
func (d *driver) runStage(ctx context.Context, stage wrapper.Stage, command []string, label string, appendJournal bool) error {
	fmt.Fprintf(d.log, "\nhotpatch: === %s stage: %s ===\n", label, strings.Join(command, " "))
	before, _ := d.state.ReadJournal(stage)
	skip := len(before)
	full := append(append([]string{}, d.prefix...), command...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Dir = d.src
	cmd.Env = append(append([]string{}, d.env...), wrapper.EnvStage+"="+string(stage))
	cmd.Stdout = d.log
	cmd.Stderr = d.log
	cmd.Stdin = nil
	// Its own process group, so that cancelling stops make's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return &StageError{Stage: label, Reason: fmt.Sprintf("start %s: %v", command[0], err), Log: d.logPath}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var werr error
	countFrom := func() Progress {
		c, n := d.state.CountRecords(stage)
		if appendJournal {
			bc := 0
			for _, r := range before {
				if r.Kind == wrapper.KindCompile {
					bc++
				}
			}
			c, n = c-bc, n-skip
		}
		return Progress{Stage: label, Compiled: c, Invocations: n}
	}
	d.progress(Progress{Stage: label})
loop:
	for {
		select {
		case werr = <-done:
			break loop
		case <-tick.C:
			d.progress(countFrom())
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
			return &StageError{Stage: label, Reason: "interrupted", Log: d.logPath}
		}
	}
	final := countFrom()
	final.Done = true
	d.progress(final)
	if werr == nil {
		return nil
	}
	reason := fmt.Sprintf("%s exited: %v", strings.Join(command, " "), werr)
	if recs, err := d.state.ReadJournal(stage); err == nil {
		for _, r := range recs[min(skip, len(recs)):] {
			if r.Kind == wrapper.KindFail {
				reason = r.Error
				break
			}
		}
	}
	d.logf("%s stage failed: %s", label, reason)
	return &StageError{Stage: label, Reason: reason, Log: d.logPath}
}

// originalOutputs lists the linked outputs of the original stage (the
// last link of each path wins) with their build-ids and the sources that
// went into them.
func (d *driver) originalOutputs() ([]originalOutput, error) {
	recs, err := d.state.ReadJournal(wrapper.StageOriginal)
	if err != nil {
		return nil, err
	}
	srcByObj := map[string]string{}
	var allSources []string
	last := map[string]wrapper.Record{}
	var order []string
	for _, r := range recs {
		switch r.Kind {
		case wrapper.KindCompile:
			srcByObj[r.Object] = r.Source
			allSources = append(allSources, r.Source)
		case wrapper.KindLink:
			if _, ok := last[r.Output]; !ok {
				order = append(order, r.Output)
			}
			last[r.Output] = r
		}
	}
	var out []originalOutput
	for _, p := range order {
		r := last[p]
		if _, err := os.Stat(r.Kept); err != nil {
			continue
		}
		id, err := elfobj.BuildIDOfFile(r.Kept)
		if err != nil {
			// Outputs without a build-id cannot be patch targets;
			// relocatable links (-r) are among them.
			continue
		}
		o := originalOutput{Path: p, Kept: r.Kept, BuildID: id}
		for _, in := range r.Inputs {
			if s, ok := srcByObj[in]; ok {
				o.Sources = append(o.Sources, s)
			}
		}
		for obj, s := range srcByObj {
			if strings.HasPrefix(obj, p+"@") {
				o.Sources = append(o.Sources, s)
			}
		}
		if len(o.Sources) == 0 {
			// Linked from archives: any source may be in it.
			o.Sources = dedupe(allSources)
		}
		sort.Strings(o.Sources)
		out = append(out, o)
	}
	return out, nil
}

var cvePattern = regexp.MustCompile(`(?i)CVE-\d{4}-\d{4,}`)

func (d *driver) patchID() string {
	if d.o.ID != "" {
		return d.o.ID
	}
	var parts []string
	for _, df := range d.diffs {
		base := filepath.Base(df)
		for _, ext := range []string{".diff", ".patch"} {
			base = strings.TrimSuffix(base, ext)
		}
		parts = append(parts, base)
	}
	return strings.Join(parts, "+")
}

func (d *driver) labels() []string {
	seen := map[string]bool{}
	var out []string
	texts := append([]string{d.patchID()}, d.diffs...)
	for _, t := range texts {
		for _, m := range cvePattern.FindAllString(filepath.Base(t), -1) {
			m = strings.ToUpper(m)
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

func (d *driver) created() time.Time {
	if v := envValue(d.o.Env, "SOURCE_DATE_EPOCH"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return d.o.Now().UTC().Truncate(time.Second)
}

// extractAll checks and extracts every output the patched stage linked.
func (d *driver) extractAll(outputs []originalOutput, targets map[string][]*originalOutput) ([]Patch, error) {
	recs, err := d.state.ReadJournal(wrapper.StagePatched)
	if err != nil {
		return nil, err
	}
	byPath := map[string]originalOutput{}
	for _, o := range outputs {
		byPath[o.Path] = o
	}
	seen := map[string]bool{}
	var patches []Patch
	for _, r := range recs {
		if r.Kind != wrapper.KindLink || seen[r.Output] {
			continue
		}
		seen[r.Output] = true
		orig, ok := byPath[r.Output]
		if !ok {
			d.logf("%s is new in the patched build; nothing to patch", r.Output)
			continue
		}
		if len(targets) > 0 && len(targets[r.Output]) == 0 {
			d.logf("%s is not among the --target binaries; skipped", r.Output)
			continue
		}
		if _, err := os.Stat(r.Output); err != nil {
			continue
		}
		if err := CheckLayout(orig.Kept, r.Output); err != nil {
			return nil, err
		}
		var warns []string
		p, err := extract.File(r.Output, orig.Kept, extract.Options{
			Target:      filepath.Base(r.Output),
			ID:          d.patchID(),
			Level:       d.o.Level,
			Description: d.o.Description,
			Labels:      d.labels(),
			Created:     d.created(),
			ToolVersion: version.Version,
			Warn:        func(w string) { warns = append(warns, w) },
		})
		if errors.Is(err, extract.ErrNoPatch) {
			d.logf("%s: no patch sections, nothing changed", r.Output)
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d.out, 0o755); err != nil {
			return nil, err
		}
		var fns []string
		for _, f := range p.Funcs {
			if f.Flags&patchfile.FuncRangeOnly == 0 {
				fns = append(fns, f.Name)
			}
		}
		// One patch per build-id the output is deployed under: a
		// deployed copy with the same loaded contents and another id
		// gets the same patch under its own id.
		ids := [][]byte{p.BuildID}
		if ts := targets[r.Output]; len(ts) > 0 {
			ids = nil
			for _, t := range ts {
				ids = append(ids, t.DeployedID)
			}
		}
		written := map[string]bool{}
		for _, id := range ids {
			p.BuildID = id
			if written[p.FileName()] {
				continue
			}
			written[p.FileName()] = true
			path := filepath.Join(d.out, p.FileName())
			if err := patchfile.WriteFile(path, p); err != nil {
				return nil, fmt.Errorf("write patch for %s: %w", r.Output, err)
			}
			patches = append(patches, Patch{Path: path, Target: r.Output, BuildID: p.BuildIDString(), Functions: fns, Warnings: warns})
			d.logf("wrote %s for %s", path, r.Output)
		}
	}
	return patches, nil
}

// sourceExts are the files whose mtime the original stage refreshes so
// that every translation unit is compiled again through the wrapper.
var sourceExts = map[string]bool{
	".c": true, ".cc": true, ".cp": true, ".cxx": true, ".cpp": true, ".c++": true, ".C": true,
	".h": true, ".hh": true, ".hpp": true, ".hxx": true, ".h++": true, ".H": true, ".inc": true,
	".i": true, ".ii": true, ".s": true, ".S": true, ".sx": true,
}

func walkTree(root string, skip []string, fn func(path string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			for _, s := range skip {
				if path == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		return fn(path, de)
	})
}

func touchSources(root string, skip []string, now time.Time) error {
	return walkTree(root, skip, func(path string, de fs.DirEntry) error {
		if !de.Type().IsRegular() || !sourceExts[filepath.Ext(path)] {
			return nil
		}
		if err := os.Chtimes(path, now, now); err != nil {
			return fmt.Errorf("refresh %s: %w", path, err)
		}
		return nil
	})
}

// treeFingerprint summarises the tree by the name, size, mode and mtime of
// every file, as make sees it.
func treeFingerprint(root string, skip []string) (string, error) {
	h := sha256.New()
	err := walkTree(root, skip, func(path string, de fs.DirEntry) error {
		info, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%d\n", rel, info.Size(), info.Mode(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", root, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
