package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// What --dry-run says would happen to a patch.
const (
	wouldApply   = "would-apply"
	wouldReplace = "would-replace"
	wouldRefuse  = "would-refuse"
	wouldRemove  = "would-remove"
)

// dryRunPatch says what patch would do to pid, from the process's maps
// and region headers alone: nothing is stopped or written.
func dryRunPatch(pid int, patches []*patchfile.Patch) (processOutcome, error) {
	out := processOutcome{Pid: pid, Status: "dry-run", Patches: []patcher.PatchResult{}}
	p, err := patcher.Inspect(pid)
	if err != nil {
		return out, err
	}
	regions, err := patcher.FindRegions(p.MemPid, p.Maps)
	if err != nil {
		return out, err
	}
	for _, patch := range patches {
		obj := p.ObjectByBuildID(patch.BuildID)
		if obj == nil {
			return out, fmt.Errorf("pid %d: no loaded object has the build-id %s of patch %s", pid, patch.BuildIDString(), patch.ID)
		}
		r := patcher.PatchResult{ID: patch.ID, Level: patch.Level, BuildID: patch.BuildIDString(), Object: obj.Path, Status: wouldApply}
		for _, f := range patch.Funcs {
			if f.Flags&patchfile.FuncRangeOnly == 0 {
				r.Functions = append(r.Functions, f.Name)
			}
		}
		for _, reg := range regions {
			if reg.ID() != patch.ID || reg.BuildID() != r.BuildID || reg.Incomplete() {
				continue
			}
			switch {
			case reg.Level() == patch.Level:
				r.Status = patcher.StatusAlreadyApplied
			case reg.Level() < patch.Level:
				r.Status, r.ReplacedLevel = wouldReplace, reg.Level()
			default:
				r.Status, r.ReplacedLevel = wouldRefuse, reg.Level()
			}
		}
		out.Patches = append(out.Patches, r)
	}
	return out, nil
}

// dryRunUnpatch says which regions unpatch would remove from pid: those of
// the patch with the given id, or of the most recent patch.
func dryRunUnpatch(pid int, id string) (processOutcome, error) {
	out := processOutcome{Pid: pid, Status: "dry-run", Patches: []patcher.PatchResult{}}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return out, err
	}
	regions, err := patcher.FindRegions(pid, maps)
	if err != nil {
		return out, err
	}
	if len(regions) == 0 {
		return out, fmt.Errorf("unpatch pid %d: %w", pid, patcher.ErrNotPatched)
	}
	if id == "" {
		id = regions[len(regions)-1].ID()
	}
	for _, r := range regions {
		if r.ID() == id {
			out.Patches = append(out.Patches, patcher.PatchResult{ID: r.ID(), Level: r.Level(), BuildID: r.BuildID(),
				Object: r.Target(), Status: wouldRemove, Functions: r.Functions(), Base: r.Base()})
		}
	}
	if len(out.Patches) == 0 {
		return out, fmt.Errorf("unpatch pid %d: patch %s: %w", pid, id, patcher.ErrNotPatched)
	}
	return out, nil
}

func writeDryRun(w io.Writer, o processOutcome) {
	for _, p := range o.Patches {
		what := ""
		switch p.Status {
		case wouldApply:
			what = "would apply"
		case wouldReplace:
			what = fmt.Sprintf("would replace level %d with", p.ReplacedLevel)
		case wouldRefuse:
			what = fmt.Sprintf("would refuse (level %d is applied)", p.ReplacedLevel)
		case patcher.StatusAlreadyApplied:
			what = "already has"
		case wouldRemove:
			what = "would remove"
		}
		fmt.Fprintf(w, "pid %d (%s): %s %s level %d in %s (%s)\n", o.Pid, commOf(o.Pid), what, p.ID, p.Level, p.Object, strings.Join(p.Functions, ", "))
	}
}

func commOf(pid int) string {
	c, err := proc.Comm(pid)
	if err != nil {
		return "?"
	}
	return c
}
