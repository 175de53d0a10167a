// Package unwind finds the return addresses on a stopped thread's stack,
// so that the patcher can tell whether any thread is executing, or will
// return into, a function it is about to replace.
//
// The unwinder follows the call frame information of .eh_frame, as GCC's
// runtime and gdb do: tables are parsed once per object, outside the
// pause (NewTable, TableForObject), gathered with their load biases into
// an AddressSpace, and each thread is then unwound from its registers and
// a bulk copy of its stack without allocating. Signal frames are followed
// through their CFI ("S" augmentation) or, for a trampoline without any,
// through the kernel's signal frame layout. When unwinding stops early,
// Scan is the conservative fallback: every stack word that points into
// the code of interest counts.
package unwind

import (
	"errors"
	"fmt"
	"sort"
)

// Reasons an unwind stops early. A *StopError wraps one of them.
var (
	// ErrNoFDE: no call frame information covers the PC (code without
	// CFI, JIT code, or a corrupt return address).
	ErrNoFDE = errors.New("no call frame information covers the address")
	// ErrLoop: the stack pointer went backwards without a signal frame,
	// which only corrupt stacks or wrong CFI produce.
	ErrLoop = errors.New("the stack does not unwind towards its base")
	// ErrTooDeep: more frames than the caller allowed.
	ErrTooDeep = errors.New("more frames than the limit")
	// ErrUnknownRegister: a rule needs a register whose value was lost
	// in an inner frame.
	ErrUnknownRegister = errors.New("a register the rule needs is not known")
)

// StopError says where and why an unwind stopped before the outermost
// frame. The frames before it are still valid.
type StopError struct {
	// Frame is the index of the frame that could not be unwound.
	Frame int
	PC    uint64
	// Object names the table covering PC, if any.
	Object string
	Err    error
}

func (e *StopError) Error() string {
	where := "unknown code"
	if e.Object != "" {
		where = e.Object
	}
	return fmt.Sprintf("unwind stopped at frame %d (pc %#x in %s): %v", e.Frame, e.PC, where, e.Err)
}

func (e *StopError) Unwrap() error { return e.Err }

// Frame is one frame of a thread's stack, innermost first.
type Frame struct {
	// PC is where the frame executes: the next instruction for a precise
	// frame, otherwise the return address its callee will return to.
	PC uint64
	// SP is the stack pointer in this frame.
	SP uint64
	// CFA is the canonical frame address (the stack pointer before the
	// call that created the frame); 0 when the unwind stopped in this
	// frame.
	CFA uint64
	// Precise says PC is the next instruction to execute: the innermost
	// frame, or a frame a signal interrupted.
	Precise bool
	// Signal marks the frame of a signal return trampoline.
	Signal bool
}

// In reports whether the frame is executing inside, or will return into,
// the code range [start, end). A return address at end belongs to the
// range (a call as its last instruction); one at start does not.
func (f Frame) In(start, end uint64) bool {
	if f.Precise {
		return f.PC >= start && f.PC < end
	}
	return f.PC > start && f.PC <= end
}

// AddressSpace is the call frame information of one process: tables with
// the load biases of their objects.
type AddressSpace struct {
	arch    *Arch
	modules []module
}

type module struct {
	lo, hi uint64 // run-time code range covered by the table
	bias   uint64
	table  *Table
}

// NewAddressSpace starts an empty address space for code of arch a.
func NewAddressSpace(a *Arch) *AddressSpace { return &AddressSpace{arch: a} }

// Arch returns the architecture the space unwinds.
func (s *AddressSpace) Arch() *Arch { return s.arch }

// Add makes t's code known at bias (run-time address minus link-time
// address; 0 for a non-PIE executable or for CFI parsed at its run-time
// address, such as a patch region's). Tables of overlapping code are
// refused.
func (s *AddressSpace) Add(t *Table, bias uint64) error {
	if t.arch != s.arch {
		return fmt.Errorf("add %s to the address space: its code is %s, the process's %s", t.Name, t.arch.Name, s.arch.Name)
	}
	lo, hi := t.Bounds()
	if lo == hi {
		return nil
	}
	m := module{lo: lo + bias, hi: hi + bias, bias: bias, table: t}
	i := sort.Search(len(s.modules), func(i int) bool { return s.modules[i].lo >= m.lo })
	if i > 0 && s.modules[i-1].hi > m.lo || i < len(s.modules) && s.modules[i].lo < m.hi {
		other := s.modules[i-1]
		if i < len(s.modules) && s.modules[i].lo < m.hi {
			other = s.modules[i]
		}
		return fmt.Errorf("add %s at %#x-%#x to the address space: overlaps %s at %#x-%#x", t.Name, m.lo, m.hi, other.table.Name, other.lo, other.hi)
	}
	s.modules = append(s.modules, module{})
	copy(s.modules[i+1:], s.modules[i:])
	s.modules[i] = m
	return nil
}

func (s *AddressSpace) find(pc uint64) *module {
	i := sort.Search(len(s.modules), func(i int) bool { return s.modules[i].lo > pc }) - 1
	if i >= 0 && pc < s.modules[i].hi {
		return &s.modules[i]
	}
	return nil
}

// ObjectAt names the table whose code range holds pc, for messages.
func (s *AddressSpace) ObjectAt(pc uint64) string {
	if m := s.find(pc); m != nil {
		return m.table.Name
	}
	return ""
}

// DefaultMaxFrames limits an unwind when the caller passes no buffer.
const DefaultMaxFrames = 1024

// unwinder is the per-call state; it stays on the goroutine's stack.
type unwinder struct {
	s    *AddressSpace
	mem  Memory
	m    machine
	next Regs
}

// Unwind walks the stack of a thread whose registers are regs, reading
// stack words from mem, and appends the frames to frames[:0], at most
// cap(frames) of them (the caller's buffer sets the limit, and lets
// repeated unwinds allocate nothing; with no capacity, DefaultMaxFrames
// applies). It returns the frames and nil when
// it reached the outermost frame (a return address column marked
// undefined, as _start and clone mark theirs, or a zero return address).
// Otherwise it returns the frames it found and a *StopError.
func (s *AddressSpace) Unwind(regs *Regs, mem Memory, frames []Frame) ([]Frame, error) {
	var u unwinder
	u.s, u.mem = s, mem
	return u.run(regs, frames[:0])
}

func (u *unwinder) run(regs *Regs, frames []Frame) ([]Frame, error) {
	a := u.s.arch
	maxFrames := cap(frames)
	if maxFrames == 0 {
		maxFrames = DefaultMaxFrames
		frames = make([]Frame, 0, maxFrames)
	}
	cur := *regs
	precise := true
	stop := func(pc uint64, err error) ([]Frame, error) {
		se := &StopError{Frame: len(frames) - 1, PC: pc, Object: u.s.ObjectAt(pc), Err: err}
		return frames, se
	}
	for {
		pc, ok := cur.Get(a.PC)
		if !ok {
			return stop(0, fmt.Errorf("%w: the program counter", ErrUnknownRegister))
		}
		sp, spOK := cur.Get(a.SP)
		if len(frames) == maxFrames {
			return frames, &StopError{Frame: len(frames), PC: pc, Object: u.s.ObjectAt(pc), Err: ErrTooDeep}
		}
		frames = append(frames, Frame{PC: pc, SP: sp, Precise: precise})
		if !spOK {
			return stop(pc, fmt.Errorf("%w: the stack pointer", ErrUnknownRegister))
		}
		// A return address is the instruction after the call; the call
		// itself, which may be the last instruction of the function (a
		// call to a noreturn function), is what the caller executes.
		lookup := pc
		if !precise {
			lookup--
		}
		mod := u.s.find(lookup)
		var f *fde
		if mod != nil {
			f = mod.table.lookup(lookup - mod.bias)
		}
		// A return address just past the end of an FDE's range is either
		// a call to a noreturn function as the last instruction, or a
		// signal trampoline without CFI placed right after a function
		// (gdb takes the function's CFI there and goes astray). Only the
		// code can tell; looking costs a memory read for this rare case
		// alone.
		if f == nil || !precise && pc-mod.bias == f.pcEnd && a.SignalFrame != nil && u.isTrampoline(&cur) {
			if a.SignalFrame != nil {
				interrupted, ok, err := a.SignalFrame(u.mem, cur)
				if err != nil {
					return stop(pc, fmt.Errorf("signal frame: %w", err))
				}
				if ok {
					cur = interrupted
					frames[len(frames)-1].Signal = true
					frames[len(frames)-1].CFA = sp
					precise = true
					continue
				}
			}
			return stop(pc, ErrNoFDE)
		}
		if err := u.m.rowAt(mod.table, f, lookup-mod.bias); err != nil {
			return stop(pc, err)
		}
		c := u.m.c
		cfa, err := u.cfa(&cur)
		if err != nil {
			return stop(pc, err)
		}
		frames[len(frames)-1].CFA = cfa
		raRule := &u.m.row.regs[c.ra]
		if raRule.kind == ruleUndefined {
			return frames, nil
		}
		if err := u.callerRegs(&cur, cfa); err != nil {
			return stop(pc, err)
		}
		ra, ok := u.next.Get(c.ra)
		if !ok {
			return stop(pc, fmt.Errorf("%w: the return address", ErrUnknownRegister))
		}
		if ra == 0 {
			return frames, nil
		}
		u.next.Set(a.PC, ra)
		if k := u.m.row.regs[a.SP].kind; k == ruleUnspecified || k == ruleSame {
			// The CFA is by definition the caller's stack pointer.
			u.next.Set(a.SP, cfa)
		}
		newSP, _ := u.next.Get(a.SP)
		// A signal frame may switch to another stack (sigaltstack);
		// ordinary calls only ever move towards the base.
		if !c.signal && (newSP < sp || newSP == sp && ra == pc) {
			return stop(pc, fmt.Errorf("%w: caller's stack pointer %#x, this frame's %#x", ErrLoop, newSP, sp))
		}
		if c.signal {
			frames[len(frames)-1].Signal = true
		}
		precise = c.signal
		cur = u.next
	}
}

// isTrampoline asks the architecture whether regs' PC is a signal return
// trampoline, without changing regs.
func (u *unwinder) isTrampoline(regs *Regs) bool {
	_, ok, err := u.s.arch.SignalFrame(u.mem, *regs)
	return ok && err == nil
}

// cfa computes the canonical frame address of the current row.
func (u *unwinder) cfa(cur *Regs) (uint64, error) {
	c := &u.m.row.cfa
	if c.isExpr {
		return evalExpr(u.s.arch, u.m.t.data[c.exprStart:c.exprEnd], cur, u.mem, 0, false)
	}
	v, ok := cur.Get(c.reg)
	if !ok || c.reg >= u.s.arch.NumRegs {
		return 0, fmt.Errorf("%w: CFA is based on %s", ErrUnknownRegister, u.s.arch.RegName(c.reg))
	}
	return v + uint64(c.off), nil
}

// callerRegs applies the row's rules to cur, giving the caller's
// registers in u.next.
func (u *unwinder) callerRegs(cur *Regs, cfa uint64) error {
	a := u.s.arch
	u.next = *cur
	for n := 0; n < a.NumRegs; n++ {
		r := &u.m.row.regs[n]
		switch r.kind {
		case ruleUnspecified, ruleSame:
		case ruleUndefined:
			u.next.Known &^= 1 << uint(n)
		case ruleOffset:
			v, err := u.mem.Word(cfa + uint64(r.off))
			if err != nil {
				return fmt.Errorf("%w: %s saved at %#x", ErrUnreadable, a.RegName(n), cfa+uint64(r.off))
			}
			u.next.Set(n, v)
		case ruleValOffset:
			u.next.Set(n, cfa+uint64(r.off))
		case ruleRegister:
			v, ok := cur.Get(int(r.reg))
			if !ok {
				u.next.Known &^= 1 << uint(n)
				continue
			}
			u.next.Set(n, v)
		case ruleExpression, ruleValExpression:
			v, err := evalExpr(a, u.m.t.data[r.exprStart:r.exprEnd], cur, u.mem, cfa, true)
			if err != nil {
				return fmt.Errorf("rule for %s: %w", a.RegName(n), err)
			}
			if r.kind == ruleExpression {
				addr := v
				if v, err = u.mem.Word(addr); err != nil {
					return fmt.Errorf("%w: %s saved at %#x", ErrUnreadable, a.RegName(n), addr)
				}
			}
			u.next.Set(n, v)
		}
	}
	return nil
}
