package patcher

import (
	"debug/elf"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/version"
)

// plan prepares every patch outside any stop: resolve, place, relocate.
func (s *session) plan(patches []*patchfile.Patch, res *Result) ([]*plan, error) {
	// What each old entry currently holds: the top patch region's jump,
	// or nothing (the original code).
	top := map[uint64]*regionHeader{}
	var seq uint64
	for _, r := range s.regions {
		seq = max(seq, r.hdr.Seq)
		for _, f := range r.hdr.Funcs {
			if !f.RangeOnly {
				top[f.Old] = r.hdr
			}
		}
	}
	pending := map[uint64][]byte{}
	var taken [][2]uint64
	var plans []*plan
	for _, patch := range patches {
		if err := patch.Validate(); err != nil {
			return nil, err
		}
		if patch.Arch != s.a.Machine {
			return nil, fmt.Errorf("patch %s is for %v, pid %d runs %v", patch.ID, patch.Arch, s.p.Pid, s.a.Machine)
		}
		obj := s.p.ObjectByBuildID(patch.BuildID)
		if obj == nil {
			return nil, fmt.Errorf("patch %s (for %s, build-id %s): %w in pid %d; the process runs another build", patch.ID, patch.Target, patch.BuildIDString(), ErrNoTarget, s.p.Pid)
		}
		pr := PatchResult{ID: patch.ID, Level: patch.Level, BuildID: patch.BuildIDString(), Object: obj.Path}
		var replaces *Region
		for _, r := range s.regions {
			if r.hdr.ID != patch.ID || r.hdr.BuildID != patch.BuildIDString() {
				continue
			}
			switch {
			case r.hdr.Level == patch.Level:
				pr.Status = StatusAlreadyApplied
				pr.Functions = r.Functions()
				pr.Base = r.hdr.Base
			case r.hdr.Level > patch.Level:
				return nil, fmt.Errorf("patch %s level %d in pid %d: level %d is applied: %w", patch.ID, patch.Level, s.p.Pid, r.hdr.Level, ErrLevel)
			default:
				replaces = r
			}
		}
		if pr.Status == StatusAlreadyApplied {
			res.Patches = append(res.Patches, pr)
			continue
		}
		l, err := s.link(patch, obj, taken)
		if err != nil {
			return nil, err
		}
		taken = append(taken, [2]uint64{l.base - pageSize, l.base + l.size + pageSize})
		seq++
		hdr := &regionHeader{ID: patch.ID, Level: patch.Level, BuildID: patch.BuildIDString(), Target: obj.Path,
			Bias: obj.Bias, Base: l.base, Size: l.size, Seq: seq, Tool: version.Version, Parts: l.parts,
			TextStart: l.textStart, TextEnd: l.textEnd, EHFrameAddr: l.ehAddr, EHFrameSize: l.ehSize, TrapAddr: l.trapAddr}
		pl := &plan{l: l, hdr: hdr, replaces: replaces}
		covered := map[uint64]bool{}
		for _, f := range l.funcs {
			if f.RangeOnly {
				hdr.Funcs = append(hdr.Funcs, f)
				continue
			}
			if _, inBatch := pending[f.Old]; top[f.Old] == nil && !inBatch {
				// Checked once, by the first patch of the function: its
				// entry now holds a jump.
				if err := s.checkRoom(obj, f); err != nil {
					return nil, fmt.Errorf("patch %s: %w", patch.ID, err)
				}
			}
			jump, ok := s.a.EncodeJump(f.Old, f.New)
			if !ok {
				return nil, fmt.Errorf("patch %s: function %s: the new code at %#x is out of jump reach of %#x", patch.ID, f.Name, f.New, f.Old)
			}
			cur, inBatch := pending[f.Old]
			below := top[f.Old]
			switch {
			case replaces != nil && below == replaces.hdr:
				// Replace-by-level: take over what the old level saved.
				for _, of := range replaces.hdr.Funcs {
					if of.Old == f.Old && !of.RangeOnly {
						f.Saved, f.Prev = of.Saved, of.Prev
					}
				}
				cur = nil
			case inBatch:
				f.Saved = cur
			default:
				f.Saved = make([]byte, s.a.JumpSize)
				if err := proc.ReadMem(s.p.MemPid, f.Old, f.Saved); err != nil {
					return nil, fmt.Errorf("patch %s: read the entry of %s: %w", patch.ID, f.Name, err)
				}
			}
			if below != nil && (replaces == nil || below != replaces.hdr) {
				f.Prev = below.Base
			}
			old := f.Saved
			if inBatch {
				old = cur
			} else if replaces != nil && below == replaces.hdr {
				old = make([]byte, s.a.JumpSize)
				if err := proc.ReadMem(s.p.MemPid, f.Old, old); err != nil {
					return nil, err
				}
			}
			pl.jumps = append(pl.jumps, jumpWrite{addr: f.Old, new: jump, old: old})
			pending[f.Old] = jump
			top[f.Old] = hdr
			covered[f.Old] = true
			hdr.Funcs = append(hdr.Funcs, f)
			pr.Functions = append(pr.Functions, f.Name)
		}
		if replaces != nil {
			pr.Status, pr.ReplacedLevel = StatusReplaced, replaces.hdr.Level
			for _, of := range replaces.hdr.Funcs {
				if of.RangeOnly {
					continue
				}
				if t := top[of.Old]; t != replaces.hdr && !covered[of.Old] {
					return nil, fmt.Errorf("patch %s level %d cannot replace level %d in pid %d: patch %s was applied on top of it (function %s): %w; unpatch it first",
						patch.ID, patch.Level, replaces.hdr.Level, s.p.Pid, t.ID, of.Name, ErrDependency)
				}
				if !covered[of.Old] {
					// The new level no longer patches this function:
					// put back what was under the old level.
					cur := make([]byte, s.a.JumpSize)
					if err := proc.ReadMem(s.p.MemPid, of.Old, cur); err != nil {
						return nil, err
					}
					pl.jumps = append(pl.jumps, jumpWrite{addr: of.Old, new: of.Saved, old: cur})
				}
			}
		} else {
			pr.Status = StatusApplied
		}
		pr.Base = l.base
		res.Patches = append(res.Patches, pr)
		plans = append(plans, pl)
	}
	return plans, nil
}

// checkRoom refuses a function too short for the jump unless padding
// follows it.
func (s *session) checkRoom(obj *Object, f regionFunc) error {
	if f.OldSize >= uint64(s.a.JumpSize) {
		return nil
	}
	for a := f.Old + f.OldSize; a < f.Old+uint64(s.a.JumpSize); a++ {
		if sym, ok := obj.File.FuncAt(a - obj.Bias); ok && sym.Value+obj.Bias == a {
			return fmt.Errorf("function %s in %s is %d bytes, shorter than the %d-byte jump, and %s follows it at once: %w",
				f.Name, obj.Path, f.OldSize, s.a.JumpSize, sym.Name, ErrTooShort)
		}
	}
	// Read well past the jump: a multi-byte nop must be decoded whole.
	buf := make([]byte, f.OldSize+32)
	if err := proc.ReadMem(s.p.MemPid, f.Old, buf); err != nil {
		return err
	}
	if s.a.PaddingLen(buf[f.OldSize:]) >= s.a.JumpSize-int(f.OldSize) {
		return nil
	}
	return fmt.Errorf("function %s in %s is %d bytes, shorter than the %d-byte jump, and no padding follows it: %w",
		f.Name, obj.Path, f.OldSize, s.a.JumpSize, ErrTooShort)
}

func (s *session) link(patch *patchfile.Patch, obj *Object, taken [][2]uint64) (*linked, error) {
	r := &resolver{p: s.p, target: obj}
	stubs := callStubCandidates(patch, s.a)
	secOff, stubOff, parts, hsize, trapOff, frameObjOff := layout(patch, s.a, stubs)
	size := parts[len(parts)-1].Off + parts[len(parts)-1].Size
	base, err := chooseBase(s.p.Maps, obj, size, needsLowRegion(patch) && obj.File.Type == elf.ET_EXEC, taken)
	if err != nil {
		return nil, fmt.Errorf("patch %s in pid %d: %w", patch.ID, s.p.Pid, err)
	}
	l, err := r.link(patch, s.a, secOff, stubOff, parts, hsize, trapOff, frameObjOff, base)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", s.p.Pid, err)
	}
	return l, nil
}
