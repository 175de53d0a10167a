package patcher

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfobj"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// stackSnapshot is how much of each thread's stack is copied in the bulk
// read; deeper frames are read word by word through /proc/PID/mem.
const stackSnapshot = 4 << 10

// dangerRange is code no thread may be in, or return into, when the jumps
// are written: an old function being replaced, or patch code being
// removed.
type dangerRange struct {
	start, end uint64
	name       string
	// entryOK says a thread about to execute the first instruction is
	// safe: the range is an old function that gets a jump at its entry,
	// written whole while the thread is stopped, so it will execute the
	// jump. Threads preempted right after a call stop there often.
	entryOK bool
	// noReturn says the code has no return instruction: a frame in it
	// never returns, so waiting for it is pointless.
	noReturn bool
}

// BusyError says a thread was executing, or would return into, a function
// being replaced or removed, for as long as the patcher was allowed to
// retry.
type BusyError struct {
	Pid, Tid int
	Function string
	// PC is where the thread was; Frame its depth (0 = executing).
	PC       uint64
	Frame    int
	Attempts int
	// Scanned is set when the stack could not be unwound and a
	// conservative scan found the address.
	Scanned bool
	// Context is set, instead of Tid, for a coroutine: the address of
	// its saved context, of kind ContextKind (ucontext_t or jmp_buf).
	Context     uint64
	ContextKind string
}

func (e *BusyError) Error() string {
	how := "is executing"
	if e.Frame > 0 {
		how = fmt.Sprintf("will return into (frame %d)", e.Frame)
	}
	if e.Scanned {
		how = "may return into (a conservative stack scan found its address)"
	}
	if e.Context != 0 {
		return fmt.Sprintf("a coroutine of pid %d (its %s saved at %#x) is suspended and %s %s at %#x after %d attempts: it would resume in the old code; retry when no coroutine is suspended in it, or raise --retries/--timeout",
			e.Pid, e.ContextKind, e.Context, how, e.Function, e.PC, e.Attempts)
	}
	return fmt.Sprintf("thread %d of pid %d %s %s at %#x after %d attempts: retry when the function is idle, or raise --retries/--timeout",
		e.Tid, e.Pid, how, e.Function, e.PC, e.Attempts)
}

// checker holds everything the safety check needs, prepared before the
// pause so that the pause only reads stacks and walks tables.
type checker struct {
	// pid is the live thread memory is read through; tgid the process.
	pid    int
	tgid   int
	maps   []proc.Mapping
	arch   *arch.Arch
	space  *unwind.AddressSpace
	ranges *unwind.Ranges
	danger []dangerRange
	mem    *unwind.ProcessMemory
	bufs   []byte
	frames []unwind.Frame
	hits   []unwind.Hit
	snap   []unwind.Snapshot
	rngs   []proc.Range
	// contexts says the process may hold coroutine contexts
	// (coroutines.go).
	contexts bool
}

func newChecker(p *Process, regions []*regionHeader, extra []*linked, danger []dangerRange) (*checker, error) {
	a := unwind.AMD64
	space := unwind.NewAddressSpace(a)
	for _, o := range p.Objects {
		if len(o.File.EHFrame.Data) == 0 {
			continue
		}
		t, err := objectTable(o)
		if err != nil {
			// An object whose CFI cannot be parsed is unwound through
			// by the conservative scan instead.
			continue
		}
		_ = space.Add(t, o.Bias)
	}
	addVDSO(p, space)
	for _, h := range regions {
		if h.EHFrameSize == 0 || h.EHFrameSize > 16<<20 {
			continue
		}
		data := make([]byte, h.EHFrameSize)
		if err := proc.ReadMem(p.MemPid, h.EHFrameAddr, data); err != nil {
			continue
		}
		if t, err := unwind.NewTable(a, "patch "+h.ID, unwind.Section{Addr: h.EHFrameAddr, Data: data}, unwind.Section{}); err == nil {
			_ = space.Add(t, 0)
		}
	}
	for _, l := range extra {
		if l.ehSize == 0 {
			continue
		}
		off := l.ehAddr - l.base
		data := l.image[off : off+l.ehSize]
		if t, err := unwind.NewTable(a, "patch "+l.patch.ID, unwind.Section{Addr: l.ehAddr, Data: data}, unwind.Section{}); err == nil {
			_ = space.Add(t, 0)
		}
	}
	cr := make([]unwind.CodeRange, len(danger))
	for i, d := range danger {
		cr[i] = unwind.CodeRange{Start: d.start, End: d.end, ID: i}
	}
	mem, err := unwind.OpenProcessMemory(p.MemPid)
	if err != nil {
		return nil, err
	}
	c := &checker{pid: p.MemPid, tgid: p.Pid, maps: p.Maps, arch: arch.AMD64, space: space, ranges: unwind.NewRanges(cr), danger: danger, mem: mem,
		frames: make([]unwind.Frame, 0, unwind.DefaultMaxFrames), contexts: usesContexts(p)}
	if tids, err := proc.Threads(p.Pid); err == nil {
		c.grow(len(tids) + 8)
	}
	return c, nil
}

// addVDSO adds the call frame information of the vDSO, which has no file
// to open: threads that spin on clock_gettime stop inside it, and without
// its CFI their stacks could only be scanned.
func addVDSO(p *Process, space *unwind.AddressSpace) {
	for _, m := range p.Maps {
		if m.Path != "[vdso]" || m.Size() > 1<<20 {
			continue
		}
		image := make([]byte, m.Size())
		if err := proc.ReadMem(p.MemPid, m.Start, image); err != nil {
			return
		}
		o, err := elfobj.New(bytes.NewReader(image), "[vdso]")
		if err != nil {
			return
		}
		bias, err := o.LoadBias(elfobj.Mapping{Start: m.Start, End: m.End, Exec: m.Perms.Exec})
		if err != nil {
			return
		}
		if t, err := unwind.TableForObject(o); err == nil {
			_ = space.Add(t, bias)
		}
		return
	}
}

// tableCache keeps parsed call frame information per object file, so
// that patching many processes parses libc's once.
var tableCache = struct {
	sync.Mutex
	m map[*elfobj.Object]*unwind.Table
}{m: map[*elfobj.Object]*unwind.Table{}}

func objectTable(o *Object) (*unwind.Table, error) {
	tableCache.Lock()
	defer tableCache.Unlock()
	if t, ok := tableCache.m[o.File]; ok {
		return t, nil
	}
	t, err := unwind.TableForObject(o.File)
	if err != nil {
		return nil, err
	}
	tableCache.m[o.File] = t
	return t, nil
}

func (c *checker) close() { c.mem.Close() }

// returnAddress filters the conservative scan's hits: a word counts only
// if the code before it is a call, as before every return address. A
// word equal to the start of the range is the address of the function
// itself (a function pointer passed to pthread_create, say): a return
// there would return into the function before it.
func (c *checker) returnAddress(v uint64, r unwind.CodeRange) bool {
	if v == r.Start {
		return false
	}
	w, err := c.mem.Word(v - 8)
	if err != nil {
		return true
	}
	var code [8]byte
	binary.LittleEndian.PutUint64(code[:], w)
	return c.arch.CallBefore(code[1:])
}

// maxScan bounds the conservative scan of one stack.
const maxScan = 8 << 20

// stackEnd returns the end of the mapping holding sp, 0 if none does.
func (c *checker) stackEnd(sp uint64) uint64 {
	i := sort.Search(len(c.maps), func(i int) bool { return c.maps[i].End > sp })
	if i < len(c.maps) && c.maps[i].Start <= sp {
		return c.maps[i].End
	}
	return 0
}

// grow makes room for n threads' stacks.
func (c *checker) grow(n int) {
	if len(c.snap) >= n {
		return
	}
	c.bufs = make([]byte, n*stackSnapshot)
	c.snap = make([]unwind.Snapshot, n)
	c.rngs = make([]proc.Range, n)
}

// unsafeThread is a thread found in a danger range, with what the wait
// for it needs.
type unsafeThread struct {
	th   *ptrace.Thread
	busy *BusyError
	// danger is the range of its outermost unsafe frame.
	danger int
	// slot is where that frame's return address is stored and ret the
	// address; slot is 0 when the frame cannot be hooked (it was found by
	// a scan, or its caller is not known).
	slot, ret uint64
}

// assess reads every stopped thread's stack in one batch and returns the
// threads that have a frame inside a danger range; with first, it stops
// at the first such thread.
func (c *checker) assess(threads []*ptrace.Thread, first bool) ([]unsafeThread, error) {
	if len(c.danger) == 0 {
		return nil, nil
	}
	c.grow(len(threads))
	for i, th := range threads {
		c.rngs[i] = proc.Range{Addr: th.Regs.SP(), Buf: c.bufs[i*stackSnapshot : (i+1)*stackSnapshot]}
	}
	got, err := proc.ReadRanges(c.pid, c.rngs[:len(threads)])
	if err != nil {
		return nil, err
	}
	var out []unsafeThread
	for i, th := range threads {
		snap := &c.snap[i]
		*snap = unwind.Snapshot{Addr: th.Regs.SP(), Data: c.rngs[i].Buf[:got[i]], Fallback: c.mem}
		regs := unwind.AMD64.RegsFrom(&th.Regs)
		frames, uerr := c.space.Unwind(&regs, snap, c.frames[:0])
		outer, outerRange := -1, -1
		for depth, f := range frames {
			for k, d := range c.danger {
				if f.In(d.start, d.end) && !(f.Precise && f.PC == d.start && d.entryOK) {
					outer, outerRange = depth, k
					break
				}
			}
		}
		var scanned *BusyError
		if uerr != nil {
			// The unwind stopped early: every word above the last good
			// frame that points into a danger range counts.
			sp := th.Regs.SP()
			if len(frames) > 0 {
				sp = frames[len(frames)-1].SP
			}
			scanned = c.scanStack(th, snap, sp, len(frames))
		}
		switch {
		case scanned != nil:
			out = append(out, unsafeThread{th: th, busy: scanned, danger: -1})
		case outer >= 0:
			f := frames[outer]
			u := unsafeThread{th: th, danger: outerRange,
				busy: &BusyError{Pid: c.tgid, Tid: th.Tid, Function: c.danger[outerRange].name, PC: f.PC, Frame: outer}}
			u.slot, u.ret = c.returnSlot(frames, outer)
			out = append(out, u)
		default:
			continue
		}
		if first {
			break
		}
	}
	if len(out) == 0 && c.contexts {
		busy, err := c.checkContexts(threads)
		if err != nil {
			return nil, err
		}
		if busy != nil {
			out = append(out, unsafeThread{busy: busy, danger: -1})
		}
	}
	return out, nil
}

// scanStack scans a stack from sp, where unwinding stopped, for return
// addresses into a danger range.
func (c *checker) scanStack(th *ptrace.Thread, snap *unwind.Snapshot, sp uint64, depth int) *BusyError {
	if end := c.stackEnd(sp); end > snap.Addr+uint64(len(snap.Data)) {
		// The stack goes on past the snapshot: scan all of it.
		// Rare (unwinding failed), so the extra read is allowed.
		deep := make([]byte, min(end-sp, maxScan))
		n, err := proc.ReadRanges(c.pid, []proc.Range{{Addr: sp, Buf: deep}})
		if err == nil {
			snap = &unwind.Snapshot{Addr: sp, Data: deep[:n[0]], Fallback: c.mem}
		}
	}
	c.hits = unwind.Scan(snap, sp, c.ranges, c.hits[:0])
	for _, h := range c.hits {
		if c.returnAddress(h.Value, h.Range) {
			return &BusyError{Pid: c.tgid, Tid: th.Tid, Function: c.danger[h.Range.ID].name, PC: h.Value, Frame: depth, Scanned: true}
		}
	}
	return nil
}

// returnSlot finds where frame k's return address is stored, and the
// address, when the frame was entered by a call and its caller is known:
// the word at the arch's return slot below the frame's CFA must hold the
// caller frame's return address.
func (c *checker) returnSlot(frames []unwind.Frame, k int) (slot, ret uint64) {
	if k+1 >= len(frames) || frames[k].CFA == 0 || frames[k].Signal || frames[k+1].Precise {
		return 0, 0
	}
	slot = frames[k].CFA + uint64(c.arch.ReturnSlot)
	ret = frames[k+1].PC
	if w, err := c.mem.Word(slot); err != nil || w != ret {
		return 0, 0
	}
	return slot, ret
}
