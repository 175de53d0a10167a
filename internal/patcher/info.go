package patcher

import (
	"bytes"
	"encoding/hex"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// ObjectInfo is a loaded object and the patches applied to it.
type ObjectInfo struct {
	Path    string      `json:"path"`
	BuildID string      `json:"build_id"`
	Base    uint64      `json:"load_bias"`
	Patches []PatchInfo `json:"patches"`
}

// PatchInfo describes an applied patch.
type PatchInfo struct {
	ID        string    `json:"id"`
	Level     uint32    `json:"level"`
	Functions []string  `json:"functions"`
	AppliedAt time.Time `json:"applied_at"`
	PauseUS   int64     `json:"pause_us"`
	Region    uint64    `json:"region"`
	Size      uint64    `json:"size"`
	// Active is false when the region is there but its jumps are not
	// (a process forked while the patch was being applied).
	Active bool `json:"active"`
	// State says what the region is: "active" (its jumps are in),
	// "inactive" (mapped and filled, no jump written), "incomplete" (a
	// run that mapped it was interrupted before it was filled) or
	// "mixed" (some jumps are in: a run was interrupted inside its
	// pause). unpatch removes all but mixed regions.
	State string `json:"state"`
}

// ProcessInfo is what info reports for one process.
type ProcessInfo struct {
	Pid     int          `json:"pid"`
	Command string       `json:"command"`
	Objects []ObjectInfo `json:"objects"`
	// Orphans are regions whose object is no longer loaded.
	Orphans []PatchInfo `json:"orphans,omitempty"`
}

// Info lists the loaded objects of pid and the patches applied to each,
// from the process alone.
func Info(pid int) (*ProcessInfo, error) {
	p, err := Inspect(pid)
	if err != nil {
		return nil, err
	}
	regions, err := FindRegions(p.MemPid, p.Maps)
	if err != nil {
		return nil, err
	}
	comm, _ := proc.Comm(pid)
	pi := &ProcessInfo{Pid: pid, Command: comm}
	a, err := arch.ForMachine(p.Objects[0].File.Machine)
	if err != nil {
		return nil, err
	}
	used := make([]bool, len(regions))
	for _, o := range p.Objects {
		oi := ObjectInfo{Path: o.Path, BuildID: hex.EncodeToString(o.File.BuildID), Base: o.Bias, Patches: []PatchInfo{}}
		for i, r := range regions {
			if r.hdr.BuildID == oi.BuildID && oi.BuildID != "" {
				oi.Patches = append(oi.Patches, patchInfo(p, a, regions, r))
				used[i] = true
			}
		}
		pi.Objects = append(pi.Objects, oi)
	}
	for i, r := range regions {
		if !used[i] {
			pi.Orphans = append(pi.Orphans, patchInfo(p, a, regions, r))
		}
	}
	return pi, nil
}

func patchInfo(p *Process, a *arch.Arch, all []*Region, r *Region) PatchInfo {
	st := activeState(p, a, all, r)
	name := map[regionState]string{stateActive: "active", stateInactive: "inactive", stateMixed: "mixed"}[st]
	if r.hdr.Incomplete {
		name = "incomplete"
	}
	return PatchInfo{ID: r.hdr.ID, Level: r.hdr.Level, Functions: r.Functions(), AppliedAt: r.AppliedAt(),
		PauseUS: r.hdr.PauseUS, Region: r.hdr.Base, Size: r.hdr.Size, Active: st == stateActive, State: name}
}

type regionState int

const (
	stateActive   regionState = iota // every entry jumps to it, or to a patch stacked on it
	stateInactive                    // every entry holds what it saved: its jumps were never written here
	stateMixed
)

// activeState checks the entries a region redirects. A process forked
// between the mapping of a region and the writing of its jumps inherits
// the region but not the jumps: info must not call that patch applied.
func activeState(p *Process, a *arch.Arch, all []*Region, r *Region) regionState {
	if r.hdr.Incomplete {
		// Its jumps come after its final header.
		return stateInactive
	}
	active, inactive, n := 0, 0, 0
	for _, f := range r.hdr.Funcs {
		if f.RangeOnly {
			continue
		}
		n++
		cur := make([]byte, a.JumpSize)
		if err := proc.ReadMem(p.MemPid, f.jumpAt(), cur); err != nil {
			continue
		}
		if want, ok := a.EncodeJump(f.jumpAt(), f.New); ok && bytes.Equal(cur, want) || stackedOn(all, r, f.Old) {
			active++
		} else if bytes.Equal(cur, f.Saved) {
			inactive++
		}
	}
	switch {
	case active == n:
		return stateActive
	case inactive == n:
		return stateInactive
	}
	return stateMixed
}

// stackedOn reports whether a newer region redirects old on top of r.
func stackedOn(all []*Region, r *Region, old uint64) bool {
	for _, o := range all {
		if o.hdr.Seq <= r.hdr.Seq {
			continue
		}
		for _, f := range o.hdr.Funcs {
			if f.Old == old && f.Prev == r.hdr.Base {
				return true
			}
		}
	}
	return false
}
