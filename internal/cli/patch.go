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
	"github.com/spf13/cobra"
)

type targetOptions struct {
	pid  string
	json bool
}

func (t *targetOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.pid, "pid", "p", "", "process id, or \"all\" for every process the caller may trace")
	cmd.Flags().BoolVar(&t.json, "json", false, "print the result as JSON")
	_ = cmd.MarkFlagRequired("pid")
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
	retries int
	timeout time.Duration
}

func newPatchCommand(g *globalOptions) *cobra.Command {
	o := &patchOptions{}
	cmd := &cobra.Command{
		Use:   "patch -p PID|all [--json] [--retries N] [--timeout D] FILE.hpatch|DIR",
		Short: "Apply patch files to running processes",
		Long: `patch applies a patch file, or every matching patch file of a directory, to
running processes. Each process gets exactly the patches whose build-id
matches one of its loaded objects, all of them in one pause or none: any
failure restores the process before it resumes.

If a thread is executing, or will return into, a function being replaced,
the process is resumed briefly and the check retried, up to --retries
times or for --timeout, whichever ends first. Applying a patch that is
already applied changes nothing; a higher level of an applied patch
replaces it in the same pause.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPatch(g, o, args[0])
		},
	}
	o.register(cmd)
	cmd.Flags().IntVar(&o.retries, "retries", 10, "how often to retry while a thread is inside a function being replaced")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "give up retrying after this long")
	return cmd
}

// loadPatches reads FILE.hpatch, or every .hpatch file of DIR.
func loadPatches(path string) ([]*patchfile.Patch, error) {
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
		p, err := patchfile.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
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
	patches, err := loadPatches(path)
	if err != nil {
		return fmt.Errorf("load patches: %w", err)
	}
	pids, all, err := o.pids()
	if err != nil {
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
	id string
}

func newUnpatchCommand(g *globalOptions) *cobra.Command {
	o := &unpatchOptions{}
	cmd := &cobra.Command{
		Use:   "unpatch -p PID|all [-i ID] [--json]",
		Short: "Remove applied patches from running processes",
		Long: `unpatch removes the most recent patch, or the patch with the given id. A
patch built for several objects (an executable and its libraries: one id,
one file per object) is removed from every object in one pause, or not at
all; --json lists each object. A patch that another patch was stacked on
is removed only after that one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnpatch(g, o)
		},
	}
	o.register(cmd)
	cmd.Flags().StringVarP(&o.id, "id", "i", "", "remove the patch with this id instead of the most recent one")
	return cmd
}

func runUnpatch(g *globalOptions, o *unpatchOptions) error {
	pids, all, err := o.pids()
	if err != nil {
		return err
	}
	opt := patcher.Options{Retries: 10, Timeout: 5 * time.Second}
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
		Use:   "info -p PID|all [--json]",
		Short: "Show the loaded objects and applied patches of running processes",
		Long: `info lists, per process, the loaded objects with their build-ids and the
patches applied to each: id, level, functions, when it was applied and the
pause it caused. Everything is read from the process itself. With -p all,
only processes that carry a patch are listed.`,
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
				if !p.Active {
					state = " (INACTIVE: its region is mapped but its jumps are not written; unpatch removes it)"
				}
				fmt.Fprintf(g.stdout, "    patch %s level %d: %s; applied %s, pause %d µs%s\n", p.ID, p.Level,
					strings.Join(p.Functions, ", "), p.AppliedAt.Local().Format("2006-01-02 15:04:05"), p.PauseUS, state)
			}
		}
		for _, p := range info.Orphans {
			fmt.Fprintf(g.stdout, "  (object no longer loaded) patch %s level %d at %#x\n", p.ID, p.Level, p.Region)
		}
	}
	return nil
}
