package patcher

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// maxResolverCalls bounds how many ifunc resolvers one apply calls.
const maxResolverCalls = 64

// planResolving plans the patches, calling in the process the resolver of
// each ifunc the patches use that no loaded object has a resolved slot
// for, and planning again with its result. Each call stops one thread
// briefly, outside the pause, as the mapping of a region does.
func (s *session) planResolving(patches []*patchfile.Patch, res *Result) ([]*plan, error) {
	for calls := 0; ; calls++ {
		res.Patches = nil
		plans, err := s.plan(patches, res)
		var need *needResolverError
		if !errors.As(err, &need) {
			return plans, err
		}
		if calls == maxResolverCalls {
			return nil, fmt.Errorf("pid %d: more than %d ifunc resolvers to call: %w", s.p.Pid, maxResolverCalls, err)
		}
		if err := s.callResolver(need); err != nil {
			return nil, err
		}
	}
}

// callResolver calls the resolver of an ifunc in the process and records
// what it returned. The call returns to a trap written into scratch room
// (the unused tail of an executable page), restored afterwards. On
// x86-64 glibc calls resolvers without arguments; they read the CPU
// features themselves.
func (s *session) callResolver(need *needResolverError) error {
	if s.tr == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	fail := func(err error) error {
		return fmt.Errorf("pid %d: call the resolver of ifunc %s (%s at %#x): %w", s.p.Pid, need.name, need.def.Path, need.addr, err)
	}
	sc := s.reserveScratch(uint64(len(s.a.Trap)))
	if sc == nil {
		return fail(fmt.Errorf("no executable room to return to; rebuild the patch so that it calls %s through a function the target already uses", need.name))
	}
	var v uint64
	err := s.mem.WriteAt(s.a.Trap, sc.at)
	if err == nil {
		err = s.tr.Do(func(c *ptrace.Ctl) error {
			return s.withInjector(c, func(th *ptrace.Thread) error {
				var err error
				v, err = c.Call(th, need.addr, sc.at)
				return err
			})
		})
		s.noteThreadStop()
	}
	if rerr := s.releaseScratch(sc); err == nil {
		err = rerr
	}
	if err != nil {
		return fail(err)
	}
	if o := s.p.ObjectAt(v); o == nil || !s.executable(v) {
		return fail(fmt.Errorf("it returned %#x, which is not code of a loaded object", v))
	}
	s.resolved[need.addr] = v
	return nil
}

// executable reports whether addr lies in an executable mapping.
func (s *session) executable(addr uint64) bool {
	for _, m := range s.p.Maps {
		if addr >= m.Start && addr < m.End {
			return m.Perms.Exec
		}
	}
	return false
}

// resolvePatchIFuncs calls, once the regions are mapped and before the
// pause, the resolver of each new ifunc of the patches on one stopped
// thread, returning to the region's trap, and writes what it returned
// into the stubs and address words that stand for the ifunc. Nothing
// reaches them before the jumps are written.
func (s *session) resolvePatchIFuncs(plans []*plan) error {
	var todo []*plan
	for _, pl := range plans {
		if len(pl.l.ifuncFixups) > 0 {
			todo = append(todo, pl)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	impl := map[uint64]uint64{}
	err := s.tr.Do(func(c *ptrace.Ctl) error {
		return s.withInjector(c, func(th *ptrace.Thread) error {
			for _, pl := range todo {
				for _, f := range pl.l.ifuncFixups {
					if _, done := impl[f.resolver]; done {
						continue
					}
					v, err := c.Call(th, f.resolver, pl.l.trapAddr)
					if err != nil {
						return fmt.Errorf("patch %s in pid %d: call the resolver of new ifunc %s: %w", pl.hdr.ID, s.p.Pid, f.name, err)
					}
					if !(v >= pl.l.textStart && v < pl.l.textEnd) && !s.executable(v) {
						return fmt.Errorf("patch %s in pid %d: the resolver of new ifunc %s returned %#x, which is not code", pl.hdr.ID, s.p.Pid, f.name, v)
					}
					impl[f.resolver] = v
				}
			}
			return nil
		})
	})
	s.noteThreadStop()
	if err != nil {
		return err
	}
	for _, pl := range todo {
		for _, f := range pl.l.ifuncFixups {
			var b []byte
			if f.stub {
				b = s.a.EncodeFarJump(impl[f.resolver])
			} else {
				b = make([]byte, s.a.PtrSize)
				binary.LittleEndian.PutUint64(b, impl[f.resolver]+uint64(f.addend))
			}
			copy(pl.l.image[f.place-pl.l.base:], b)
			if err := s.mem.WriteAt(b, f.place); err != nil {
				return fmt.Errorf("patch %s in pid %d: write the implementation of new ifunc %s: %w", pl.hdr.ID, s.p.Pid, f.name, err)
			}
		}
	}
	return nil
}
