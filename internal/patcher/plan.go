package patcher

import (
	"debug/elf"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
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
	pendingSite := map[uint64]uint64{}
	// trampolines are the padding this batch writes jumps into.
	var trampolines [][2]uint64
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
			cur, inBatch := pending[f.Old]
			below := top[f.Old]
			var entry *jumpWrite
			switch {
			case inBatch:
				f.Site = pendingSite[f.Old]
			case below != nil:
				// The entry already leads to the jump of the patch
				// below; this one goes where that one is.
				for _, bf := range below.Funcs {
					if bf.Old == f.Old && !bf.RangeOnly {
						f.Site = bf.Site
					}
				}
			default:
				// Checked once, by the first patch of the function: its
				// entry now holds a jump.
				rd, err := s.redirect(obj, f, trampolines)
				if err != nil {
					return nil, fmt.Errorf("patch %s: %w", patch.ID, err)
				}
				if rd.Entry != nil {
					f.Site = rd.Site
					f.EntrySaved = make([]byte, len(rd.Entry))
					if err := proc.ReadMem(s.p.MemPid, f.Old, f.EntrySaved); err != nil {
						return nil, fmt.Errorf("patch %s: read the entry of %s: %w", patch.ID, f.Name, err)
					}
					entry = &jumpWrite{addr: f.Old, new: rd.Entry, old: f.EntrySaved}
					trampolines = append(trampolines, [2]uint64{rd.Site, rd.Site + uint64(s.a.JumpSize)})
				}
			}
			site := f.jumpAt()
			jump, ok := s.a.EncodeJump(site, f.New)
			if !ok {
				return nil, fmt.Errorf("patch %s: function %s: the new code at %#x is out of jump reach of %#x", patch.ID, f.Name, f.New, site)
			}
			switch {
			case replaces != nil && below == replaces.hdr:
				// Replace-by-level: take over what the old level saved.
				for _, of := range replaces.hdr.Funcs {
					if of.Old == f.Old && !of.RangeOnly {
						f.Saved, f.Prev, f.EntrySaved = of.Saved, of.Prev, of.EntrySaved
					}
				}
				cur = nil
			case inBatch:
				f.Saved = cur
			default:
				f.Saved = make([]byte, s.a.JumpSize)
				if err := proc.ReadMem(s.p.MemPid, site, f.Saved); err != nil {
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
				if err := proc.ReadMem(s.p.MemPid, site, old); err != nil {
					return nil, err
				}
			}
			// The trampoline first, then the short jump to it.
			pl.jumps = append(pl.jumps, jumpWrite{addr: site, new: jump, old: old})
			if entry != nil {
				pl.jumps = append(pl.jumps, *entry)
			}
			pending[f.Old] = jump
			pendingSite[f.Old] = f.Site
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
					w, err := s.restoreFunc(replaces.hdr, of)
					if err != nil {
						return nil, err
					}
					pl.jumps = append(pl.jumps, w...)
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

// redirect decides where the jump of f goes: over its entry when it is
// long enough or padding follows it, otherwise into a trampoline in
// padding within reach of a short jump at its entry. Padding is told from
// code by the object's full symbol table: nops inside a function run.
func (s *session) redirect(obj *Object, f regionFunc, taken [][2]uint64) (arch.Redirect, error) {
	if f.OldSize >= uint64(s.a.JumpSize) {
		return arch.Redirect{Site: f.Old}, nil
	}
	lo, hi := s.a.ShortWindow(f.Old, f.OldSize)
	for _, m := range s.p.Maps {
		if f.Old >= m.Start && f.Old < m.End {
			lo, hi = max(lo, m.Start), min(hi, m.End)
		}
	}
	buf := make([]byte, hi-lo)
	if err := proc.ReadMem(s.p.MemPid, lo, buf); err != nil {
		return arch.Redirect{}, fmt.Errorf("read the code around %s in %s: %w", f.Name, obj.Path, err)
	}
	symtab := hasSymtab(obj)
	room := arch.Room{Addr: lo, Bytes: buf,
		Free: func(a uint64) bool {
			if !symtab {
				// Without .symtab, static functions are unknown:
				// only the bytes up to the jump's end right after
				// f count, as before.
				return a >= f.Old+f.OldSize && a < f.Old+uint64(s.a.JumpSize) && !startsFunc(obj, a)
			}
			if _, in := obj.File.FuncAt(a - obj.Bias); in {
				return false
			}
			// Code after a function symbol without a size is unknown.
			prev, ok := obj.File.FuncBefore(a - obj.Bias)
			return !ok || prev.Size != 0
		},
		Taken: func(lo, hi uint64) bool {
			for _, t := range taken {
				if lo < t[1] && t[0] < hi {
					return true
				}
			}
			return false
		},
	}
	rd, err := s.a.PlanRedirect(f.Old, f.OldSize, room)
	if err != nil {
		next := ""
		if sym, ok := obj.File.FuncAt(f.Old + f.OldSize - obj.Bias); ok && sym.Value+obj.Bias == f.Old+f.OldSize {
			next = fmt.Sprintf(" (%s follows it at once)", sym.Name)
		}
		if !symtab {
			next += "; the object has no .symtab to tell padding from code"
		}
		return rd, fmt.Errorf("function %s in %s%s: %w: %w; patch its callers instead", f.Name, obj.Path, next, err, ErrTooShort)
	}
	return rd, nil
}

func startsFunc(obj *Object, a uint64) bool {
	sym, ok := obj.File.FuncAt(a - obj.Bias)
	return ok && sym.Value+obj.Bias == a
}

// hasSymtab reports whether obj has a full symbol table (not only the
// dynamic one).
func hasSymtab(obj *Object) bool {
	for _, s := range obj.File.Symbols() {
		if !s.Dynamic {
			return true
		}
	}
	return false
}

func (s *session) link(patch *patchfile.Patch, obj *Object, taken [][2]uint64) (*linked, error) {
	if s.resolved == nil {
		s.resolved = map[uint64]uint64{}
	}
	r := &resolver{p: s.p, target: obj, resolved: s.resolved}
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
