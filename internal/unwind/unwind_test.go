package unwind

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

const stackBytes = 256 << 10

// stackVariants are the compilations of testdata/stacks every chain test
// runs over: frame pointers or not, optimised or not, with debug
// information or not.
var stackVariants = map[string][]string{
	"O0":                    {"-O0"},
	"O2":                    {"-O2"},
	"O2-g":                  {"-O2", "-g"},
	"O0-omit-frame-pointer": {"-O0", "-fomit-frame-pointer"},
	"O2-frame-pointer":      {"-O2", "-fno-omit-frame-pointer"},
}

func buildStacks(t testing.TB, flags []string) string {
	return testutil.BuildFixture(t, testutil.Build{Dir: "testdata/stacks", Flags: append([]string{"-pthread", "-Wl,--build-id"}, flags...)})
}

// expectedChains are the fixture's own functions on each thread's stack,
// innermost first; frames in libc and the dynamic linker are left out of
// the comparison, but the unwind must still get through them to the
// outermost frame.
var expectedChains = map[string][]string{
	"sleeper": {"sleep_leaf", "sleep_mid", "sleep_top", "sleeper_main"},
	"reader":  {"read_leaf", "read_mid", "reader_main"},
	"deep":    append(append([]string{"sleep_leaf"}, repeat("recurse", 200)...), "deep_main"),
	"altsig":  {"sleep_leaf", "handler_leaf", "on_usr1", "spin_alt", "altsig_main"},
	"rawsig":  {"sleep_leaf", "handler_leaf", "on_usr2", "raw_restorer", "spin_raw", "rawsig_main"},
	"main":    {"main", "_start"},
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// parked is a fixture process whose threads all sleep in their resting
// places.
type parked struct {
	Pid   int
	names map[int]string
}

// startParked runs a fixture and waits until all its threads sleep in
// their resting places. The fixture runs under a shell rather than as
// this process's child: os/exec's wait for its child would otherwise
// consume the ptrace stops of the main thread that the test waits for.
func startParked(t testing.TB, path string, args ...string) parked {
	t.Helper()
	p := testutil.Start(t, "/bin/sh", append([]string{"-c", `"$0" "$@" & wait`, path}, args...)...)
	p.WaitFor(t, 0, "ready\n", 20*time.Second)
	names := parkedThreads(t, p.Output())
	pid := 0
	for tid, name := range names {
		if name == "main" {
			pid = tid
		}
	}
	if pid == 0 {
		t.Fatalf("fixture did not report its main thread:\n%s", p.Output())
	}
	waitAsleep(t, pid)
	return parked{Pid: pid, names: names}
}

func TestUnwindParkedThreads(t *testing.T) {
	testutil.RequirePtrace(t)
	for name, flags := range stackVariants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := buildStacks(t, flags)
			p := startParked(t, path)
			names := p.names
			space, objs := loadSpace(t, p.Pid)
			threads := captureThreads(t, p.Pid, stackBytes)
			if len(threads) != len(expectedChains) {
				t.Fatalf("%d threads, want %d", len(threads), len(expectedChains))
			}
			mem, err := OpenProcessMemory(p.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			buf := make([]Frame, 0, 512)
			for _, th := range threads {
				name := names[th.tid]
				th.snap.Fallback = mem
				frames, err := space.Unwind(&th.regs, th.snap, buf)
				if err != nil {
					t.Errorf("thread %s (%d): %v\n%s", name, th.tid, err, describe(objs, frames))
					continue
				}
				checkChain(t, name, objs, frames)
			}
		})
	}
}

// checkChain compares a thread's frames with its expected chain and
// checks the signal frames.
func checkChain(t *testing.T, name string, objs []object, frames []Frame) {
	t.Helper()
	want, ok := expectedChains[name]
	if !ok {
		t.Fatalf("unknown thread %q", name)
	}
	var got []string
	for _, f := range frames {
		if s := symbolize(objs, f); !strings.HasPrefix(s, "libc") && !strings.HasPrefix(s, "ld-linux") {
			got = append(got, s)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("thread %s: fixture frames\n  %s\nwant\n  %s\nall frames:\n%s", name, strings.Join(got, " "), strings.Join(want, " "), describe(objs, frames))
	}
	if frames[0].Precise != true {
		t.Errorf("thread %s: innermost frame not precise", name)
	}
	signals := 0
	for i, f := range frames {
		if f.Signal {
			signals++
			// The frame the signal interrupted runs exactly at its PC.
			if i+1 < len(frames) && !frames[i+1].Precise {
				t.Errorf("thread %s: frame after the signal frame is not precise", name)
			}
		}
		if i > 0 && !f.Precise && frames[i-1].Signal {
			t.Errorf("thread %s: frame %d follows a signal frame but is a return address", name, i)
		}
	}
	if wantSignals := map[string]int{"altsig": 1, "rawsig": 1}[name]; signals != wantSignals {
		t.Errorf("thread %s: %d signal frames, want %d\n%s", name, signals, wantSignals, describe(objs, frames))
	}
}

func describe(objs []object, frames []Frame) string {
	var b strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&b, "  #%-3d pc %#x sp %#x cfa %#x precise=%v signal=%v %s\n", i, f.PC, f.SP, f.CFA, f.Precise, f.Signal, symbolize(objs, f))
	}
	return b.String()
}

// TestUnwindMatchesGDB checks every thread's frames against gdb's
// backtrace of the same process: the same PCs, frame by frame. gdb
// follows the previous function's CFI into a trampoline that has none
// (raw_restorer right after frame_dummy) and goes astray there, so for
// that thread only the frames up to the signal frame are compared.
func TestUnwindMatchesGDB(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireTools(t, "gdb")
	path := buildStacks(t, stackVariants["O2-g"])
	p := startParked(t, path)
	names := p.names
	space, objs := loadSpace(t, p.Pid)
	threads := captureThreads(t, p.Pid, stackBytes)
	mem, err := OpenProcessMemory(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	ours := map[int][]Frame{}
	for _, th := range threads {
		th.snap.Fallback = mem
		frames, err := space.Unwind(&th.regs, th.snap, nil)
		if err != nil {
			t.Fatalf("thread %s: %v", names[th.tid], err)
		}
		ours[th.tid] = frames
	}

	// gdb also lists inline and tail-call frames it reconstructs from
	// debug information; they have no frame of their own on the stack,
	// so only real frames are compared.
	script := filepath.Join(t.TempDir(), "frames.py")
	if err := os.WriteFile(script, []byte(gdbScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gdb", "-nx", "-batch", "-p", strconv.Itoa(p.Pid),
		"-ex", "set backtrace past-main on", "-ex", "set backtrace limit 1000",
		"-x", script).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	theirs := parseGDB(t, string(out))
	if len(theirs) != len(ours) {
		t.Fatalf("gdb shows %d threads, we unwound %d:\n%s", len(theirs), len(ours), out)
	}
	for tid, frames := range ours {
		name := names[tid]
		pcs := theirs[tid]
		n := len(frames)
		if name == "rawsig" {
			for i, f := range frames {
				if f.Signal {
					n = i
					break
				}
			}
		} else if len(pcs) != len(frames) {
			t.Errorf("thread %s: gdb shows %d frames, we found %d\nours:\n%sgdb: %x", name, len(pcs), len(frames), describe(objs, frames), pcs)
			continue
		}
		for i := 0; i < n && i < len(pcs); i++ {
			if frames[i].PC != pcs[i] {
				t.Errorf("thread %s frame %d: pc %#x, gdb says %#x\nours:\n%sgdb: %x", name, i, frames[i].PC, pcs[i], describe(objs, frames), pcs)
				break
			}
		}
	}
}

const gdbScript = `
import gdb
skip = (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME)
for th in gdb.selected_inferior().threads():
    th.switch()
    print("THREAD %d" % th.ptid[1])
    f = gdb.newest_frame()
    while f is not None:
        if f.type() not in skip:
            print("FRAME %#x" % f.pc())
        f = f.older()
`

func parseGDB(t *testing.T, out string) map[int][]uint64 {
	res := map[int][]uint64{}
	tid := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "THREAD":
			tid, _ = strconv.Atoi(f[1])
			res[tid] = nil
		case len(f) == 2 && f[0] == "FRAME" && tid != 0:
			res[tid] = append(res[tid], hexU(t, f[1]))
		}
	}
	return res
}

// TestScanWithoutCFI builds the fixture without unwind tables: the
// unwinder must stop at the first fixture frame and say why, and the
// conservative scan must then find a return address into every function
// of the thread's chain.
func TestScanWithoutCFI(t *testing.T) {
	testutil.RequirePtrace(t)
	path := buildStacks(t, []string{"-O2", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"})
	p := startParked(t, path)
	names := p.names
	space, objs := loadSpace(t, p.Pid)
	exe := objs[0]
	if exe.path != path && !strings.HasSuffix(path, exe.path) {
		for _, o := range objs {
			if o.obj.IsExecutable() {
				exe = o
			}
		}
	}
	threads := captureThreads(t, p.Pid, stackBytes)
	mem, err := OpenProcessMemory(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, th := range threads {
		name := names[th.tid]
		if name != "sleeper" && name != "reader" && name != "deep" {
			continue
		}
		th.snap.Fallback = mem
		frames, err := space.Unwind(&th.regs, th.snap, nil)
		var se *StopError
		if !errors.As(err, &se) || !errors.Is(err, ErrNoFDE) {
			t.Errorf("thread %s: unwinding code without CFI gave %v\n%s", name, err, describe(objs, frames))
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%#x", se.PC)) {
			t.Errorf("error does not name the pc: %v", err)
		}
		if got := symbolize(objs, frames[len(frames)-1]); got != expectedChains[name][0] {
			t.Errorf("thread %s: stopped in %s, want the first fixture frame %s", name, got, expectedChains[name][0])
		}

		var ranges []CodeRange
		var chain []string
		for _, fn := range expectedChains[name] {
			if len(chain) == 0 || chain[len(chain)-1] != fn {
				chain = append(chain, fn)
			}
		}
		for i, fn := range chain[1:] {
			s, err := exe.obj.Lookup(fn)
			if err != nil {
				t.Fatal(err)
			}
			ranges = append(ranges, CodeRange{Start: s.Value + exe.bias, End: s.Value + s.Size + exe.bias, ID: i + 1})
		}
		hits := Scan(th.snap, th.snap.Addr, NewRanges(ranges), nil)
		found := map[int]int{}
		for _, h := range hits {
			found[h.Range.ID]++
			if h.Addr < th.snap.Addr || h.Value < h.Range.Start || h.Value > h.Range.End {
				t.Errorf("hit %+v outside its range or the stack", h)
			}
		}
		for i, fn := range chain[1:] {
			if found[i+1] == 0 {
				t.Errorf("thread %s: scan found no return address into %s", name, fn)
			}
		}
		if name == "deep" && found[1] < 199 {
			t.Errorf("thread deep: scan found %d return addresses into recurse, want at least 199", found[1])
		}
	}
}

// TestUnwindCXX unwinds C++ threads parked inside a catch block (in the
// .cold part of its function, described by its own FDE) and below an
// object with a destructor, through CIEs with personality and LSDA
// augmentations.
func TestUnwindCXX(t *testing.T) {
	testutil.RequirePtrace(t)
	path := buildCXX(t)
	p := startParked(t, path)
	space, objs := loadSpace(t, p.Pid)
	threads := captureThreads(t, p.Pid, stackBytes)
	mem, err := OpenProcessMemory(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	want := map[string][]string{
		"catcher": {"cxx_sleep", "in_catch", "outer.cold", "catcher_main"},
		"guarded": {"cxx_sleep", "with_guard", "guarded_main"},
		"main":    {"main", "_start"},
	}
	if len(threads) != len(want) {
		t.Fatalf("%d threads, want %d", len(threads), len(want))
	}
	for _, th := range threads {
		name := p.names[th.tid]
		th.snap.Fallback = mem
		frames, err := space.Unwind(&th.regs, th.snap, nil)
		if err != nil {
			t.Errorf("thread %s: %v\n%s", name, err, describe(objs, frames))
			continue
		}
		var got []string
		for _, f := range frames {
			if s := symbolize(objs, f); !strings.HasPrefix(s, "lib") && !strings.HasPrefix(s, "ld-linux") {
				got = append(got, s)
			}
		}
		if strings.Join(got, " ") != strings.Join(want[name], " ") {
			t.Errorf("thread %s: fixture frames %v, want %v\n%s", name, got, want[name], describe(objs, frames))
		}
	}
}
