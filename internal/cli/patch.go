package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/trust"
	"github.com/spf13/cobra"
)

type targetOptions struct {
	pid    string
	json   bool
	exe    string
	dryRun bool
}

func (t *targetOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.pid, "pid", "p", "", "process id, or \"all\" for every process the caller may trace")
	cmd.Flags().BoolVar(&t.json, "json", false, "print the result as JSON")
	cmd.Flags().StringVar(&t.exe, "exe", "", "only processes whose executable, or one of whose loaded objects, is this file")
	cmd.Flags().BoolVar(&t.dryRun, "dry-run", false, "say what would be done to each process, and change nothing")
	_ = cmd.MarkFlagRequired("pid")
}

// selects applies --exe: it reports whether the process runs the file, as
// its executable or as a loaded object. The kernel names both by their
// resolved path, so --exe is resolved too: /bin/x on a merged /usr
// matches a process started as /usr/bin/x.
func (t *targetOptions) selects(pid int) (bool, error) {
	if t.exe == "" {
		return true, nil
	}
	want := resolvePath(t.exe)
	if exe, err := proc.Exe(pid); err == nil && exe == want {
		return true, nil
	}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return false, err
	}
	for _, m := range maps {
		if m.IsFile() && m.Path == want {
			return true, nil
		}
	}
	return false, nil
}

func resolvePath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// filter drops the processes --exe does not select. A process named with
// -p PID that does not run the file is an error; with -p all it is
// skipped.
func (t *targetOptions) filter(g *globalOptions, pids []int, all bool) ([]int, error) {
	if t.exe == "" {
		return pids, nil
	}
	if _, err := os.Stat(t.exe); err != nil {
		return nil, usageErrorf("--exe %s: %v", t.exe, err)
	}
	var out []int
	for _, pid := range pids {
		ok, err := t.selects(pid)
		switch {
		case err != nil && !all:
			return nil, err
		case err != nil:
			g.logger.Debug("skip process", "pid", pid, "reason", err)
		case ok:
			out = append(out, pid)
		case !all:
			return nil, fmt.Errorf("pid %d does not run %s (neither its executable nor a loaded object); check with hotpatch info -p %d", pid, t.exe, pid)
		}
	}
	return out, nil
}

// pids turns -p into process ids. "all" is every process except this one
// and init, in ascending order; all reports that the caller asked for
// every process, where a process with nothing to do is skipped rather
// than an error.
func (t *targetOptions) pids() (pids []int, all bool, err error) {
	if t.pid == "all" {
		ps, err := proc.Processes()
		if err != nil {
			return nil, true, err
		}
		self := os.Getpid()
		for _, p := range ps {
			if p != self && p != 1 {
				pids = append(pids, p)
			}
		}
		return pids, true, nil
	}
	pid, err := strconv.Atoi(t.pid)
	if err != nil || pid <= 0 {
		return nil, false, usageErrorf("-p %q: want a process id or \"all\"", t.pid)
	}
	return []int{pid}, false, nil
}

// processOutcome is one process in the JSON result of patch and unpatch.
type processOutcome struct {
	Pid     int    `json:"pid"`
	Status  string `json:"status"` // ok, failed, unchanged
	Error   string `json:"error,omitempty"`
	PauseUS int64  `json:"pause_us"`
	// ThreadStopUS is the stop of the one thread that maps or unmaps the
	// region, outside the pause; single-threaded programs see it too.
	ThreadStopUS int64                 `json:"thread_stop_us"`
	Retries      int                   `json:"retries"`
	Patches      []patcher.PatchResult `json:"patches"`
}

// newOutcome is the JSON record of one process's patch or unpatch.
func newOutcome(pid int, res *patcher.Result, err error) processOutcome {
	out := processOutcome{Pid: pid, Status: "ok", Patches: []patcher.PatchResult{}}
	if res != nil {
		out.PauseUS, out.ThreadStopUS, out.Retries = res.PauseUS, res.ThreadStopUS, res.Retries
		if res.Patches != nil {
			out.Patches = res.Patches
		}
	}
	if err != nil {
		out.Status, out.Error = "failed", err.Error()
	}
	return out
}

type outcomeDoc struct {
	Processes []processOutcome `json:"processes"`
}

type patchOptions struct {
	targetOptions
	retries     int
	timeout     time.Duration
	requireSig  bool
	trustedKeys string
	config      string
}

// policy is the host policy from the configuration file, with what the
// command line adds: --trusted-keys replaces the directory, and
// --require-signature can turn the requirement on but never off.
func policy(config, keys string, require bool) (*trust.Policy, error) {
	pol, err := trust.LoadPolicy(config)
	if err != nil {
		return nil, err
	}
	if keys != "" {
		pol.TrustedKeys = keys
	}
	if require {
		pol.RequireSignature = true
	}
	return pol, nil
}

func newPatchCommand(g *globalOptions) *cobra.Command {
	o := &patchOptions{}
	cmd := &cobra.Command{
		Use:   "patch -p PID|all [--exe PATH] [--dry-run] [--require-signature] [--trusted-keys DIR] [--json] [--retries N] [--timeout D] FILE.hpatch|DIR",
		Short: "Apply patch files to running processes",
		Long: `patch applies a patch file, or every matching patch file of a directory, to
running processes. Each process gets exactly the patches whose build-id
matches one of its loaded objects, all of them in one pause or none: any
failure restores the process before it resumes.

If a thread is executing, or will return into, a function being replaced,
the process is resumed briefly and the check retried, up to --retries
times or for --timeout, whichever ends first. Applying a patch that is
already applied changes nothing; a higher level of an applied patch
replaces it in the same pause.

Only one hotpatch operates on a process at a time: another one waits up
to --timeout for it. Every patch file is checked before any process is
touched: running as root, a file (or its directory) that a user other
than root or the caller could write is refused; with signatures required
(--require-signature, or require_signature = true in the configuration
file), a patch without a valid signature by a key in the trusted-keys
directory is refused. --exe limits the processes to those running a
file; --dry-run says what would be done and changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPatch(g, o, args[0])
		},
	}
	o.register(cmd)
	cmd.Flags().IntVar(&o.retries, "retries", 10, "how often to retry while a thread is inside a function being replaced")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "give up retrying, or waiting for another hotpatch on the same process, after this long")
	cmd.Flags().BoolVar(&o.requireSig, "require-signature", false, "refuse patches without a valid signature by a trusted key")
	cmd.Flags().StringVar(&o.trustedKeys, "trusted-keys", "", "directory of trusted public keys (default: from the configuration, else "+trust.DefaultTrustedKeys+")")
	cmd.Flags().StringVar(&o.config, "config", trust.DefaultConfig, "the host configuration file")
	return cmd
}

// loadPatches opens FILE.hpatch, or every .hpatch file of DIR, through
// the host policy: every file is checked before any process is touched.
func loadPatches(pol *trust.Policy, path string) ([]*patchfile.Patch, error) {
	if pol.CheckFiles && pathIsDir(path) {
		if err := trust.CheckFile(path, nil); err != nil {
			return nil, err
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if st.IsDir() {
		files, err = filepath.Glob(filepath.Join(path, "*.hpatch"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("%s holds no .hpatch files", path)
		}
	}
	var ps []*patchfile.Patch
	for _, f := range files {
		p, err := pol.Open(f)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func pathIsDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// matching returns the patches whose build-id one of the process's
// objects has.
func matching(pid int, ps []*patchfile.Patch) ([]*patchfile.Patch, error) {
	p, err := patcher.Inspect(pid)
	if err != nil {
		return nil, err
	}
	var out []*patchfile.Patch
	for _, patch := range ps {
		if p.ObjectByBuildID(patch.BuildID) != nil {
			out = append(out, patch)
		}
	}
	return out, nil
}

func runPatch(g *globalOptions, o *patchOptions, path string) error {
	pids, all, err := o.pids()
	if err != nil {
		return err
	}
	pol, err := policy(o.config, o.trustedKeys, o.requireSig)
	if err != nil {
		return err
	}
	patches, err := loadPatches(pol, path)
	if err != nil {
		return fmt.Errorf("load patches: %w", err)
	}
	if pids, err = o.filter(g, pids, all); err != nil {
		return err
	}
	opt := patcher.Options{Retries: o.retries, Timeout: o.timeout}
	doc := outcomeDoc{Processes: []processOutcome{}}
	failed := 0
	for _, pid := range pids {
		todo := patches
		if all || len(patches) > 1 {
			todo, err = matching(pid, patches)
			if err != nil {
				if all {
					// Kernel threads, processes that exited, processes of
					// other users: nothing this caller can patch.
					g.logger.Debug("skip process", "pid", pid, "reason", err)
					continue
				}
				return err
			}
			if len(todo) == 0 {
				if all {
					continue
				}
				return fmt.Errorf("pid %d: none of the %d patches in %s matches an object it has loaded (compare its build-ids with hotpatch info -p %d)",
					pid, len(patches), path, pid)
			}
		}
		if o.dryRun {
			out, err := dryRunPatch(pid, todo)
			if err != nil && !all {
				return err
			}
			if err == nil {
				doc.Processes = append(doc.Processes, out)
				if !o.json {
					writeDryRun(g.stdout, out)
				}
			}
			continue
		}
		res, err := patcher.Apply(pid, todo, opt)
		out := newOutcome(pid, res, err)
		if err != nil {
			out.Patches = []patcher.PatchResult{}
			failed++
		} else if allAlready(out.Patches) {
			out.Status = "unchanged"
		}
		doc.Processes = append(doc.Processes, out)
		if !o.json {
			writePatchText(g.stdout, out, "applied")
		}
		if err != nil && !all && !o.json {
			return err
		}
	}
	return finish(g, &o.targetOptions, doc, failed, "patch")
}

func allAlready(ps []patcher.PatchResult) bool {
	for _, p := range ps {
		if p.Status != patcher.StatusAlreadyApplied {
			return false
		}
	}
	return len(ps) > 0
}

func writePatchText(w io.Writer, o processOutcome, verb string) {
	if o.Status == "failed" {
		return
	}
	for _, p := range o.Patches {
		switch p.Status {
		case patcher.StatusAlreadyApplied:
			fmt.Fprintf(w, "pid %d: %s level %d is already applied to %s; nothing to do\n", o.Pid, p.ID, p.Level, p.Object)
		case patcher.StatusReplaced:
			fmt.Fprintf(w, "pid %d: %s level %d replaced level %d in %s (%s)\n", o.Pid, p.ID, p.Level, p.ReplacedLevel, p.Object, strings.Join(p.Functions, ", "))
		default:
			fmt.Fprintf(w, "pid %d: %s %s level %d in %s (%s)\n", o.Pid, p.Status, p.ID, p.Level, p.Object, strings.Join(p.Functions, ", "))
		}
	}
	if o.Status == "ok" {
		fmt.Fprintf(w, "pid %d: paused %d µs\n", o.Pid, o.PauseUS)
	}
}

// finish prints the JSON document and turns failures into the exit
// status: a failure of any process is a failure of the command.
func finish(g *globalOptions, t *targetOptions, doc outcomeDoc, failed int, verb string) error {
	if t.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
	if failed == 0 {
		return nil
	}
	var first string
	for _, p := range doc.Processes {
		if p.Status == "failed" {
			first = p.Error
			break
		}
	}
	if len(doc.Processes) == 1 {
		return errors.New(first)
	}
	return fmt.Errorf("%s failed in %d of %d processes; first: %s", verb, failed, len(doc.Processes), first)
}

type unpatchOptions struct {
	targetOptions
	id      string
	timeout time.Duration
}

func newUnpatchCommand(g *globalOptions) *cobra.Command {
	o := &unpatchOptions{}
	cmd := &cobra.Command{
		Use:   "unpatch -p PID|all [--exe PATH] [--dry-run] [-i ID] [--json]",
		Short: "Remove applied patches from running processes",
		Long: `unpatch removes the most recent patch, or the patch with the given id. A
patch built for several objects (an executable and its libraries: one id,
one file per object) is removed from every object in one pause, or not at
all; --json lists each object. A patch that another patch was stacked on
is removed only after that one. --exe limits the processes to those
running a file; --dry-run says what would be removed and changes nothing.
A region that an interrupted hotpatch left (info shows it as incomplete or
inactive) is removed like a patch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnpatch(g, o)
		},
	}
	o.register(cmd)
	cmd.Flags().StringVarP(&o.id, "id", "i", "", "remove the patch with this id instead of the most recent one")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "give up retrying, or waiting for another hotpatch on the same process, after this long")
	return cmd
}

func runUnpatch(g *globalOptions, o *unpatchOptions) error {
	pids, all, err := o.pids()
	if err != nil {
		return err
	}
	if pids, err = o.filter(g, pids, all); err != nil {
		return err
	}
	opt := patcher.Options{Retries: 10, Timeout: o.timeout}
	doc := outcomeDoc{Processes: []processOutcome{}}
	failed := 0
	for _, pid := range pids {
		if all {
			// Only processes that carry a patch (with that id) are
			// touched; finding out needs no stop.
			if !hasPatch(pid, o.id) {
				continue
			}
		}
		if o.dryRun {
			out, err := dryRunUnpatch(pid, o.id)
			if err != nil && !all {
				return err
			}
			if err == nil {
				doc.Processes = append(doc.Processes, out)
				if !o.json {
					writeDryRun(g.stdout, out)
				}
			}
			continue
		}
		res, err := patcher.Unpatch(pid, o.id, opt)
		out := newOutcome(pid, res, err)
		if err != nil {
			failed++
		}
		doc.Processes = append(doc.Processes, out)
		if !o.json {
			writePatchText(g.stdout, out, "removed")
		}
		if err != nil && !all && !o.json {
			return err
		}
	}
	return finish(g, &o.targetOptions, doc, failed, "unpatch")
}

func hasPatch(pid int, id string) bool {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return false
	}
	regions, err := patcher.FindRegions(pid, maps)
	if err != nil {
		return false
	}
	for _, r := range regions {
		if id == "" || r.ID() == id {
			return true
		}
	}
	return false
}

func newInfoCommand(g *globalOptions) *cobra.Command {
	o := &targetOptions{}
	cmd := &cobra.Command{
		Use:   "info -p PID|all [--exe PATH] [--json]",
		Short: "Show the loaded objects and applied patches of running processes",
		Long: `info lists, per process, the loaded objects with their build-ids and the
patches applied to each: id, level, functions, when it was applied and the
pause it caused. Everything is read from the process itself. With -p all,
only processes that carry a patch are listed; --exe limits them to those
running a file. info changes nothing, so --dry-run changes nothing here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInfo(g, o)
		},
	}
	o.register(cmd)
	return cmd
}

func runInfo(g *globalOptions, o *targetOptions) error {
	pids, all, err := o.pids()
	if err != nil {
		return err
	}
	if pids, err = o.filter(g, pids, all); err != nil {
		return err
	}
	infos := []*patcher.ProcessInfo{}
	for _, pid := range pids {
		if all && !hasPatch(pid, "") {
			continue
		}
		info, err := patcher.Info(pid)
		if err != nil {
			if all {
				g.logger.Debug("skip process", "pid", pid, "reason", err)
				continue
			}
			return err
		}
		infos = append(infos, info)
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Processes []*patcher.ProcessInfo `json:"processes"`
		}{infos})
	}
	for _, info := range infos {
		fmt.Fprintf(g.stdout, "pid %d (%s)\n", info.Pid, info.Command)
		for _, obj := range info.Objects {
			if all && len(obj.Patches) == 0 {
				continue
			}
			id := obj.BuildID
			if id == "" {
				id = "(no build-id)"
			}
			fmt.Fprintf(g.stdout, "  %s  %s\n", id, obj.Path)
			for _, p := range obj.Patches {
				state := ""
				switch p.State {
				case "inactive":
					state = " (INACTIVE: its region is mapped but its jumps are not written; unpatch removes it)"
				case "incomplete":
					state = " (INCOMPLETE: a hotpatch run was interrupted while mapping it; it holds no jump; unpatch removes it)"
				case "mixed":
					state = " (MIXED: a hotpatch run was interrupted while writing its jumps; only some are in)"
				}
				fmt.Fprintf(g.stdout, "    patch %s level %d: %s; applied %s, pause %d µs%s\n", p.ID, p.Level,
					strings.Join(p.Functions, ", "), p.AppliedAt.Local().Format("2006-01-02 15:04:05"), p.PauseUS, state)
			}
		}
		for _, p := range info.Orphans {
			fmt.Fprintf(g.stdout, "  (object no longer loaded) patch %s level %d at %#x, %s\n", p.ID, p.Level, p.Region, p.State)
		}
	}
	return nil
}
