package patcher

import (
	"bytes"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// Unpatch removes the patch with the given id, or the most recent one
// when id is empty, from process pid.
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
	var victim *Region
	for _, r := range s.regions {
		if id == "" || r.hdr.ID == id {
			victim = r // regions are sorted by Seq: the last match is the newest
		}
	}
	if victim == nil {
		return res, fmt.Errorf("unpatch pid %d: patch %s: %w", pid, id, ErrNotPatched)
	}
	for _, r := range s.regions {
		if r.hdr.Seq <= victim.hdr.Seq {
			continue
		}
		for _, f := range r.hdr.Funcs {
			if f.Prev == victim.hdr.Base {
				return res, fmt.Errorf("unpatch %s from pid %d: patch %s is stacked on it (function %s): %w; unpatch %s first",
					victim.hdr.ID, pid, r.hdr.ID, f.Name, ErrDependency, r.hdr.ID)
			}
		}
	}
	if err := s.open(); err != nil {
		return res, err
	}
	defer s.close()
	removed := PatchResult{ID: victim.hdr.ID, Level: victim.hdr.Level, BuildID: victim.hdr.BuildID,
		Object: victim.hdr.Target, Status: StatusRemoved, Functions: victim.Functions(), Base: victim.hdr.Base}
	if activeState(s.p, s.a, s.regions, victim) == stateInactive {
		// Its jumps were never written in this process: only the
		// region is left to remove, and no thread can be in it.
		s.mapped = [][2]uint64{{victim.hdr.Base, victim.hdr.Size}}
		s.noteRegistered(victim.hdr)
		if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
			return res, err
		}
		s.noteThreadStop()
		res.ThreadStopUS = s.threadStop.Microseconds()
		res.Patches = append(res.Patches, removed)
		return res, nil
	}
	var writes []jumpWrite
	for _, f := range victim.hdr.Funcs {
		if f.RangeOnly {
			continue
		}
		cur := make([]byte, len(f.Saved))
		if err := proc.ReadMem(s.p.MemPid, f.Old, cur); err != nil {
			return res, fmt.Errorf("unpatch %s from pid %d: read the entry of %s: %w", victim.hdr.ID, pid, f.Name, err)
		}
		if want, ok := s.a.EncodeJump(f.Old, f.New); !ok || !bytes.Equal(cur, want) {
			return res, fmt.Errorf("unpatch %s from pid %d: the entry of %s no longer holds the patch's jump (someone else changed the code); refusing to restore it",
				victim.hdr.ID, pid, f.Name)
		}
		writes = append(writes, jumpWrite{addr: f.Old, new: f.Saved, old: cur})
	}
	var danger []dangerRange
	if victim.hdr.TextEnd > victim.hdr.TextStart {
		danger = append(danger, dangerRange{start: victim.hdr.TextStart, end: victim.hdr.TextEnd, name: "the code of patch " + victim.hdr.ID})
	}
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
	s.mapped = [][2]uint64{{victim.hdr.Base, victim.hdr.Size}}
	s.noteRegistered(victim.hdr)
	if err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) }); err != nil {
		return res, fmt.Errorf("patch %s is inactive in pid %d, but unmapping its region failed: %w", victim.hdr.ID, pid, err)
	}
	s.noteThreadStop()
	res.ThreadStopUS = s.threadStop.Microseconds()
	res.Patches = append(res.Patches, removed)
	return res, nil
}
