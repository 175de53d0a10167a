package patcher

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Coroutines keep frames on stacks no thread is on: a context saved by
// swapcontext (ucontext_t) or by sigsetjmp (jmp_buf, which QEMU switches
// stacks with) is a suspended "thread" whose registers sit in memory. The
// checker finds such saved contexts by scanning the process's writable
// memory for their shape, and unwinds each like a thread. The scan runs
// inside the pause (a coroutine may suspend at any moment before it), and
// only in processes that import what switching stacks takes (see
// usesContexts): others cannot have made such a context.
//
// The layouts are glibc's on x86-64 (sysdeps/unix/sysv/linux/x86_64):
// ucontext_t holds the general registers unmangled at uc_mcontext.gregs;
// __jmp_buf holds rbx, rbp, r12..r15, rsp and the return address, with
// rbp, rsp and pc mangled as rol(v ^ guard, 0x11), where guard is the
// pointer guard of the thread control block (%fs:0x30).

// switchFuncs switch stacks by themselves; a setjmp variant together with
// sigaltstack is how QEMU's coroutine-sigaltstack starts a coroutine on a
// stack of its own. A program that only uses setjmp and longjmp on its own
// thread stacks keeps no frame off them.
var (
	switchFuncs = map[string]bool{"makecontext": true, "swapcontext": true}
	setjmpFuncs = map[string]bool{"setjmp": true, "_setjmp": true, "sigsetjmp": true, "__sigsetjmp": true}
)

// Offsets in glibc's x86-64 structures, in 8-byte words.
const (
	ucGregs                   = 5 // uc_flags, uc_link, uc_stack (3 words)
	gregR12, gregR13, gregR14 = 4, 5, 6
	gregR15, gregRBP, gregRBX = 7, 10, 11
	gregRSP, gregRIP          = 15, 16
	// ucFpregs is uc_mcontext.fpregs, after the 23 general registers;
	// getcontext and swapcontext point it at __fpregs_mem inside the
	// same structure, at byte ucFpregsMem. That is the signature that
	// tells a saved context from stack data that looks like one.
	ucFpregs                          = ucGregs + 23
	ucFpregsMem                uint64 = 424
	ucWords                           = ucFpregs + 1
	jbRBX, jbRBP, jbR12, jbR13        = 0, 1, 2, 3
	jbR14, jbR15, jbRSP, jbPC         = 4, 5, 6, 7
	jbWords                           = 8
	pointerGuardOffset         uint64 = 0x30
	contextScanLimit                  = 256 << 20
	contextMappingLimit               = 64 << 20
)

// savedContext is a suspended context found in memory.
type savedContext struct {
	addr uint64
	kind string // "ucontext_t" or "jmp_buf"
	regs unwind.Regs
}

// usesContexts reports whether the loaded objects import what switching
// stacks takes: makecontext or swapcontext, or a setjmp variant together
// with sigaltstack.
func usesContexts(p *Process) bool {
	setjmp, altstack := false, false
	for _, o := range p.Objects {
		for _, s := range o.File.Imports() {
			switch {
			case switchFuncs[s.Name]:
				return true
			case setjmpFuncs[s.Name]:
				setjmp = true
			case s.Name == "sigaltstack":
				altstack = true
			}
		}
	}
	return setjmp && altstack
}

// findContexts scans writable private memory for saved contexts. Parts
// of thread stacks below the threads' stack pointers are dead and
// skipped.
func (c *checker) findContexts(threads []*ptrace.Thread) ([]savedContext, error) {
	if len(threads) == 0 {
		return nil, nil
	}
	var guard uint64
	guardOK := false
	if w, err := c.mem.Word(threads[0].Regs.TLS() + pointerGuardOffset); err == nil {
		guard, guardOK = w, true
	}
	sps := make([]uint64, 0, len(threads))
	for _, th := range threads {
		sps = append(sps, th.Regs.SP())
	}
	sort.Slice(sps, func(i, j int) bool { return sps[i] < sps[j] })
	var out []savedContext
	total := uint64(0)
	for _, m := range c.maps {
		if !m.Perms.Read || !m.Perms.Write || m.Perms.Shared || m.Size() > contextMappingLimit {
			continue
		}
		start := m.Start
		// A thread's stack below its stack pointer holds only dead
		// frames.
		if i := sort.Search(len(sps), func(i int) bool { return sps[i] >= m.Start }); i < len(sps) && sps[i] < m.End {
			start = sps[i] &^ 7
		}
		if total += m.End - start; total > contextScanLimit {
			return out, fmt.Errorf("search pid %d for coroutine contexts: more than %d MiB of writable memory to search, so a coroutine suspended in a function being replaced cannot be ruled out; patch it when it holds less memory", c.tgid, contextScanLimit>>20)
		}
		buf := make([]byte, m.End-start)
		n, err := proc.ReadRanges(c.pid, []proc.Range{{Addr: start, Buf: buf}})
		if err != nil {
			continue
		}
		buf = buf[:n[0]]
		words := len(buf) / 8
		word := func(i int) uint64 { return binary.LittleEndian.Uint64(buf[8*i:]) }
		for i := 0; i < words; i++ {
			if i+ucWords <= words {
				rip, rsp := word(i+ucGregs+gregRIP), word(i+ucGregs+gregRSP)
				if word(i+ucFpregs) == start+uint64(8*i)+ucFpregsMem && c.plausible(rip, rsp) {
					var r unwind.Regs
					g := func(n int) uint64 { return word(i + ucGregs + n) }
					setCallee(&r, rip, rsp, g(gregRBP), g(gregRBX), g(gregR12), g(gregR13), g(gregR14), g(gregR15))
					out = append(out, savedContext{addr: start + uint64(8*i), kind: "ucontext_t", regs: r})
					continue
				}
			}
			if guardOK && i+jbWords <= words {
				demangle := func(v uint64) uint64 { return bits.RotateLeft64(v, -0x11) ^ guard }
				pc, sp := demangle(word(i+jbPC)), demangle(word(i+jbRSP))
				if c.plausible(pc, sp) {
					var r unwind.Regs
					setCallee(&r, pc, sp, demangle(word(i+jbRBP)), word(i+jbRBX), word(i+jbR12), word(i+jbR13), word(i+jbR14), word(i+jbR15))
					out = append(out, savedContext{addr: start + uint64(8*i), kind: "jmp_buf", regs: r})
				}
			}
		}
	}
	return out, nil
}

// setCallee fills the registers a saved context keeps: the program
// counter, the stack pointer and the callee-saved registers.
func setCallee(r *unwind.Regs, pc, sp, rbp, rbx, r12, r13, r14, r15 uint64) {
	a := unwind.AMD64
	r.Set(a.PC, pc)
	r.Set(a.SP, sp)
	for n, v := range map[int]uint64{6: rbp, 3: rbx, 12: r12, 13: r13, 14: r14, 15: r15} {
		r.Set(n, v)
	}
}

// plausible says whether pc and sp look like a context saved by a call
// (swapcontext, sigsetjmp): pc is a return address in executable code,
// right after a call, and sp a 16-byte aligned address in writable
// memory, as after a call returns.
func (c *checker) plausible(pc, sp uint64) bool {
	if sp%16 != 0 || pc < 4096 || sp < 4096 {
		return false
	}
	mp, ok := c.mapping(pc)
	if !ok || !mp.Perms.Exec {
		return false
	}
	ms, ok := c.mapping(sp)
	if !ok || !ms.Perms.Write {
		return false
	}
	w, err := c.mem.Word(pc - 8)
	if err != nil {
		return false
	}
	var code [8]byte
	binary.LittleEndian.PutUint64(code[:], w)
	return c.arch.CallBefore(code[1:])
}

// mapping returns the mapping holding addr.
func (c *checker) mapping(addr uint64) (proc.Mapping, bool) {
	i := sort.Search(len(c.maps), func(i int) bool { return c.maps[i].End > addr })
	if i < len(c.maps) && c.maps[i].Start <= addr {
		return c.maps[i], true
	}
	return proc.Mapping{}, false
}

// checkContexts unwinds every saved context and reports one that is
// inside, or returns into, a danger range.
func (c *checker) checkContexts(threads []*ptrace.Thread) (*BusyError, error) {
	ctxs, err := c.findContexts(threads)
	if err != nil {
		return nil, err
	}
	var scanned *BusyError
	for _, ctx := range ctxs {
		regs := ctx.regs
		sp, _ := regs.Get(unwind.AMD64.SP)
		frames, uerr := c.space.Unwind(&regs, c.mem, c.frames[:0])
		for depth, f := range frames {
			for _, d := range c.danger {
				if f.In(d.start, d.end) {
					return &BusyError{Pid: c.tgid, Function: d.name, PC: f.PC, Frame: depth, Context: ctx.addr, ContextKind: ctx.kind}, nil
				}
			}
		}
		if uerr != nil && scanned == nil {
			// Frames in code without call frame information (JIT code):
			// every word above counts. A precise find in another
			// context makes the better message, so scans come second.
			if len(frames) > 0 {
				sp = frames[len(frames)-1].SP
			}
			end := c.stackEnd(sp)
			if end <= sp {
				continue
			}
			deep := make([]byte, min(end-sp, maxScan))
			n, err := proc.ReadRanges(c.pid, []proc.Range{{Addr: sp, Buf: deep}})
			if err != nil {
				continue
			}
			snap := &unwind.Snapshot{Addr: sp, Data: deep[:n[0]], Fallback: c.mem}
			c.hits = unwind.Scan(snap, sp, c.ranges, c.hits[:0])
			for _, h := range c.hits {
				if c.returnAddress(h.Value, h.Range) {
					scanned = &BusyError{Pid: c.tgid, Function: c.danger[h.Range.ID].name, PC: h.Value, Frame: len(frames), Scanned: true, Context: ctx.addr, ContextKind: ctx.kind}
					break
				}
			}
		}
	}
	return scanned, nil
}
