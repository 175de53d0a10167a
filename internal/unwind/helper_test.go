package unwind

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// ptraceRegs reads registers by DWARF number from the kernel's x86-64
// register set. The ptrace package has the same mapping; these tests stop
// threads with golang.org/x/sys/unix directly, so they carry their own.
type ptraceRegs struct{ r unix.PtraceRegs }

func (p *ptraceRegs) DWARF(n int) (uint64, bool) {
	x := &p.r
	vals := [...]uint64{x.Rax, x.Rdx, x.Rcx, x.Rbx, x.Rsi, x.Rdi, x.Rbp, x.Rsp,
		x.R8, x.R9, x.R10, x.R11, x.R12, x.R13, x.R14, x.R15, x.Rip}
	if n < 0 || n >= len(vals) {
		return 0, false
	}
	return vals[n], true
}

// thread is one stopped thread as the patcher sees it: registers and a
// bulk copy of its stack from the stack pointer up.
type thread struct {
	tid  int
	regs Regs
	snap *Snapshot
}

func readMaps(t testing.TB, pid int) []proc.Mapping {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return maps
}

func hexU(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("parse hex %q: %v", s, err)
	}
	return v
}

// captureThreads stops every thread of pid (PTRACE_SEIZE, then
// PTRACE_INTERRUPT and a wait for each), reads its registers and up to
// stackBytes of its stack from the stack pointer towards the top of the
// stack's mapping, and detaches. All ptrace calls come from one goroutine
// locked to its OS thread, as the kernel requires.
func captureThreads(t testing.TB, pid int, stackBytes int) []thread {
	t.Helper()
	maps := readMaps(t, pid)
	type result struct {
		threads []thread
		err     error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		threads, err := stopAndRead(pid, maps, stackBytes)
		done <- result{threads, err}
	}()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	return res.threads
}

func stopAndRead(pid int, maps []proc.Mapping, stackBytes int) ([]thread, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	var tids []int
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	var seized []int
	defer func() {
		for _, tid := range seized {
			_ = unix.PtraceDetach(tid)
		}
	}()
	for _, tid := range tids {
		if err := unix.PtraceSeize(tid); err != nil {
			return nil, fmt.Errorf("seize %d: %w", tid, err)
		}
		seized = append(seized, tid)
	}
	for _, tid := range tids {
		if err := unix.PtraceInterrupt(tid); err != nil {
			return nil, fmt.Errorf("interrupt %d: %w", tid, err)
		}
	}
	var out []thread
	for _, tid := range tids {
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return nil, fmt.Errorf("wait %d: %w", tid, err)
			}
			if ws.Stopped() {
				break
			}
		}
		var pr ptraceRegs
		if err := unix.PtraceGetRegs(tid, &pr.r); err != nil {
			return nil, fmt.Errorf("registers of %d: %w", tid, err)
		}
		th := thread{tid: tid, regs: AMD64.RegsFrom(&pr)}
		sp := pr.r.Rsp
		var top uint64
		for _, m := range maps {
			if sp >= m.Start && sp < m.End {
				top = m.End
			}
		}
		if top == 0 {
			return nil, fmt.Errorf("stack pointer %#x of thread %d is in no mapping", sp, tid)
		}
		n := min(uint64(stackBytes), top-sp)
		buf := make([]byte, n)
		got, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &buf[0], Len: n}},
			[]unix.RemoteIovec{{Base: uintptr(sp), Len: int(n)}}, 0)
		if err != nil {
			return nil, fmt.Errorf("read stack of %d: %w", tid, err)
		}
		th.snap = &Snapshot{Addr: sp, Data: buf[:got]}
		out = append(out, th)
	}
	return out, nil
}

// object is a loaded ELF file in the target, with its table.
type object struct {
	path  string
	obj   *elfobj.Object
	bias  uint64
	table *Table
}

// loadSpace builds the address space of pid from its file mappings, the
// way the patcher does: one table per executable object, at its bias.
func loadSpace(t testing.TB, pid int) (*AddressSpace, []object) {
	t.Helper()
	byPath := map[string][]elfobj.Mapping{}
	var order []string
	for _, m := range readMaps(t, pid) {
		if !strings.HasPrefix(m.Path, "/") || m.Path == "" {
			continue
		}
		if _, ok := byPath[m.Path]; !ok {
			order = append(order, m.Path)
		}
		byPath[m.Path] = append(byPath[m.Path], elfobj.Mapping{Start: m.Start, End: m.End, Offset: m.Offset, Exec: m.Perms.Exec})
	}
	space := NewAddressSpace(AMD64)
	var objs []object
	for _, path := range order {
		o, err := elfobj.Open(path)
		if err != nil {
			continue // not an ELF file (a mapped data file)
		}
		bias, err := o.LoadBias(byPath[path]...)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tab, err := TableForObject(o)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := space.Add(tab, bias); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, object{path: path, obj: o, bias: bias, table: tab})
	}
	return space, objs
}

// symbolize names the function holding pc ("sleep_leaf", "libc"), for
// comparing chains: functions of the fixture by name, other objects by
// their base name.
func symbolize(objs []object, f Frame) string {
	pc := f.PC
	if !f.Precise && !f.Signal {
		pc--
	}
	for _, o := range objs {
		for _, r := range o.obj.ExecRanges() {
			if pc >= r[0]+o.bias && pc < r[1]+o.bias {
				if s, ok := o.obj.FuncAt(pc - o.bias); ok && o.obj.IsExecutable() {
					return s.Name
				}
				base := filepath.Base(o.path)
				if i := strings.Index(base, ".so"); i > 0 {
					base = base[:i]
				}
				return base
			}
		}
	}
	return fmt.Sprintf("?%#x", f.PC)
}

// parkedThreads parses the "thread NAME TID" lines of a fixture.
func parkedThreads(t testing.TB, out string) map[int]string {
	names := map[int]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "thread" {
			tid, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("fixture line %q", line)
			}
			names[tid] = f[1]
		}
	}
	return names
}

// waitAsleep waits until every thread of pid sleeps in the kernel, so
// that its stack no longer changes between two looks.
func waitAsleep(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		all := true
		for _, e := range ents {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i < 0 || i+2 >= len(s) || s[i+2] != 'S' {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads of %d did not all go to sleep", pid)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
