package patcher

import (
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// ApplyHeld applies patches to a process that the caller's tracer already
// holds, such as a program the daemon stopped at its entry point so that
// it runs patched code from the first instruction of main. The threads tr
// holds stopped stay stopped until the jumps are written; then, or after
// a failure and its rollback, the process is released: ApplyHeld closes
// tr on every path. Apply, by contrast, refuses a traced process and
// makes its own tracer.
func ApplyHeld(tr *ptrace.Tracer, patches []*patchfile.Patch, opt Options) (*Result, error) {
	defer tr.Close()
	pid := tr.Pid()
	// A process just started can still be the target of a command run
	// by hand (-p all): the one-operation-per-process rule holds here too.
	unlock, err := lockProcess(pid, opt)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := Inspect(pid)
	if err != nil {
		return nil, err
	}
	a, err := arch.ForMachine(p.Objects[0].File.Machine)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	regions, err := FindRegions(p.MemPid, p.Maps)
	if err != nil {
		return nil, err
	}
	s := &session{p: p, a: a, opt: opt, regions: regions, held: true}
	res := &Result{Pid: pid}
	plans, err := s.plan(patches, res)
	if err != nil || len(plans) == 0 {
		return res, err
	}
	mem, err := proc.OpenMem(p.MemPid)
	if err != nil {
		return res, err
	}
	defer mem.Close()
	insn, err := ptrace.FindSyscallInsn(p.MemPid, a, p.Maps)
	if err != nil {
		return res, err
	}
	s.mem, s.insn, s.tr = mem, insn, tr
	// Every thread may be stopped already, so the pause would not see its
	// own start: it starts now, with the work done while held.
	_ = tr.Do(func(c *ptrace.Ctl) error {
		c.FirstStop = time.Now()
		return nil
	})
	if err := s.apply(plans, res); err != nil {
		return res, err
	}
	return res, nil
}
