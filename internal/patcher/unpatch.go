package patcher

import (
	"bytes"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// Unpatch removes the patch with the given id, or the most recent one
// when id is empty, from process pid. A patch built for several objects
// (an executable and its libraries, one file each, one id) has a region
// per object; all of them go in one pause, or none does: removing only
// some would leave the process half old and half new.
func Unpatch(pid int, id string, opt Options) (*Result, error) {
	unlock, err := lockProcess(pid, opt)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, err := newSession(pid, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{Pid: pid}
	if len(s.regions) == 0 {
		return res, fmt.Errorf("unpatch pid %d: %w", pid, ErrNotPatched)
	}
	if id == "" {
		// Regions are sorted by Seq: the last one is the newest.
		id = s.regions[len(s.regions)-1].hdr.ID
	}
	victims := map[*regionHeader]bool{}
	var order []*Region
	for _, r := range s.regions {
		if r.hdr.ID == id {
			victims[r.hdr] = true
			order = append(order, r)
		}
	}
	if len(order) == 0 {
		return res, fmt.Errorf("unpatch pid %d: patch %s: %w", pid, id, ErrNotPatched)
	}
	if err := s.checkNotDependedOn(victims); err != nil {
		return res, err
	}
	if err := s.open(); err != nil {
		return res, err
	}
	defer s.close()
	var (
		writes  []jumpWrite
		danger  []dangerRange
		removed []PatchResult
		active  bool
	)
	s.mapped = nil
	for _, v := range order {
		h := v.hdr
		removed = append(removed, PatchResult{ID: h.ID, Level: h.Level, BuildID: h.BuildID,
			Object: h.Target, Status: StatusRemoved, Functions: v.Functions(), Base: h.Base})
		s.mapped = append(s.mapped, [2]uint64{h.Base, h.Size})
		s.noteRegistered(h)
		if activeState(s.p, s.a, s.regions, v) == stateInactive {
			// Its jumps were never written in this process: only the
			// region is left to remove, and no thread can be in it.
			continue
		}
		active = true
		w, err := s.restoreWrites(h)
		if err != nil {
			return res, err
		}
		writes = append(writes, w...)
		if h.TextEnd > h.TextStart {
			danger = append(danger, dangerRange{start: h.TextStart, end: h.TextEnd, name: "the code of patch " + h.ID + " for " + h.Target})
		}
	}
	if active {
		hdrs := make([]*regionHeader, len(s.regions))
		for i, r := range s.regions {
			hdrs[i] = r.hdr
		}
		chk, err := newChecker(s.p, hdrs, nil, danger)
		if err != nil {
			return res, err
		}
		defer chk.close()
		pause, retries, err := s.pause(chk, writes, false)
		res.Retries = retries
		if err != nil {
			return res, err
		}
		res.PauseUS = pause.Microseconds()
	}
	if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
		if active {
			return res, fmt.Errorf("patch %s is inactive in pid %d, but unmapping its regions failed: %w", id, pid, err)
		}
		return res, err
	}
	s.noteThreadStop()
	res.ThreadStopUS = s.threadStop.Microseconds()
	res.Patches = append(res.Patches, removed...)
	return res, nil
}

// checkNotDependedOn refuses to remove the victims while a patch that is
// not removed with them was stacked on one of them: its saved bytes are
// the victim's jump.
func (s *session) checkNotDependedOn(victims map[*regionHeader]bool) error {
	for _, r := range s.regions {
		if victims[r.hdr] {
			continue
		}
		for _, f := range r.hdr.Funcs {
			for v := range victims {
				if f.Prev == v.Base && r.hdr.Seq > v.Seq {
					return fmt.Errorf("unpatch %s from pid %d: patch %s is stacked on it (function %s in %s): %w; unpatch %s first",
						v.ID, s.p.Pid, r.hdr.ID, f.Name, r.hdr.Target, ErrDependency, r.hdr.ID)
				}
			}
		}
	}
	return nil
}

// restoreWrites are the writes that put back what h's jumps replaced,
// after checking that each entry still holds h's jump.
func (s *session) restoreWrites(h *regionHeader) ([]jumpWrite, error) {
	var writes []jumpWrite
	for _, f := range h.Funcs {
		if f.RangeOnly {
			continue
		}
		w, err := s.restoreFunc(h, f)
		if err != nil {
			return nil, err
		}
		writes = append(writes, w...)
	}
	return writes, nil
}

// restoreFunc returns the writes that undo f's jump (and the short jump
// to its trampoline, when f wrote one), checking that the code still
// holds them.
func (s *session) restoreFunc(h *regionHeader, f regionFunc) ([]jumpWrite, error) {
	site := f.jumpAt()
	cur := make([]byte, len(f.Saved))
	if err := proc.ReadMem(s.p.MemPid, site, cur); err != nil {
		return nil, fmt.Errorf("unpatch %s from pid %d: read the jump of %s in %s: %w", h.ID, s.p.Pid, f.Name, h.Target, err)
	}
	if want, ok := s.a.EncodeJump(site, f.New); !ok || !bytes.Equal(cur, want) {
		return nil, fmt.Errorf("unpatch %s from pid %d: the jump of %s in %s at %#x no longer holds the patch's jump (someone else changed the code); refusing to restore it",
			h.ID, s.p.Pid, f.Name, h.Target, site)
	}
	writes := []jumpWrite{{addr: site, new: f.Saved, old: cur}}
	if f.EntrySaved != nil {
		entry := make([]byte, len(f.EntrySaved))
		if err := proc.ReadMem(s.p.MemPid, f.Old, entry); err != nil {
			return nil, fmt.Errorf("unpatch %s from pid %d: read the entry of %s in %s: %w", h.ID, s.p.Pid, f.Name, h.Target, err)
		}
		if want, ok := s.a.EncodeShortJump(f.Old, site); !ok || !bytes.Equal(entry, want) {
			return nil, fmt.Errorf("unpatch %s from pid %d: the entry of %s in %s no longer holds the short jump to its trampoline; refusing to restore it",
				h.ID, s.p.Pid, f.Name, h.Target)
		}
		// The entry first: then nothing reaches the trampoline.
		writes = append([]jumpWrite{{addr: f.Old, new: f.EntrySaved, old: entry}}, writes...)
	}
	return writes, nil
}
