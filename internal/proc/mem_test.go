package proc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/testutil"
	"golang.org/x/sys/unix"
)

func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func TestReadRangesBatchesAndStopsAtHoles(t *testing.T) {
	// A page followed by an unmapped page: a read spanning both returns
	// the readable part, and the ranges after it are still read.
	mem, err := unix.Mmap(-1, 0, 2*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if err := unix.Mprotect(mem[4096:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	for i := range mem[:4096] {
		mem[i] = byte(i)
	}
	base := addrOf(mem)
	other := []byte("second range")
	ranges := []Range{
		{Addr: base + 4000, Buf: make([]byte, 200)},
		{Addr: base + 1, Buf: make([]byte, 3)},
		{Addr: addrOf(other), Buf: make([]byte, len(other))},
		{Addr: base + 8192 - 16, Buf: make([]byte, 16)},
	}
	got, err := ReadRanges(os.Getpid(), ranges)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{96, 3, len(other), 0}; !equalInts(got, want) {
		t.Fatalf("read counts %v, want %v", got, want)
	}
	if !bytes.Equal(ranges[0].Buf[:96], mem[4000:4096]) || !bytes.Equal(ranges[1].Buf, mem[1:4]) || !bytes.Equal(ranges[2].Buf, other) {
		t.Fatal("read bytes differ from memory")
	}
	// More ranges than one call may carry.
	many := make([]Range, 3000)
	for i := range many {
		many[i] = Range{Addr: base + uint64(i%4096), Buf: make([]byte, 1)}
	}
	got, err = ReadRanges(os.Getpid(), many)
	if err != nil {
		t.Fatal(err)
	}
	for i := range many {
		if got[i] != 1 || many[i].Buf[0] != byte(i%4096) {
			t.Fatalf("range %d: got %d bytes %#x", i, got[i], many[i].Buf[0])
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMemWritesReadOnlyTextOfAnotherProcess(t *testing.T) {
	testutil.RequirePtrace(t)
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	var text Mapping
	for i := 0; i < 100 && text.Start == 0; i++ {
		ms, err := ReadMaps(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Perms.Exec && !m.Perms.Write && m.IsFile() && m.Path != "" {
				text = m
				break
			}
		}
	}
	if text.Start == 0 {
		t.Fatal("no executable mapping in the child")
	}
	// The sleeping child never runs the last bytes of its first text
	// mapping again in a way that matters: it is killed afterwards.
	addr := text.End - 8
	orig := make([]byte, 8)
	if err := ReadMem(pid, addr, orig); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := []byte{0xcc, 0xcc, 0xcc, 0xcc, 1, 2, 3, 4}
	if err := m.WriteAt(want, addr); err != nil {
		t.Fatalf("write text of pid %d: %v", pid, err)
	}
	got := make([]byte, 8)
	if err := ReadMem(pid, addr, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back % x, wrote % x", got, want)
	}
	back := make([]byte, 8)
	if err := m.ReadAt(back, addr); err != nil || !bytes.Equal(back, want) {
		t.Fatalf("ReadAt gave % x (%v)", back, err)
	}
}

func TestThreadsStatusAndGoneProcess(t *testing.T) {
	tids, err := Threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tid := range tids {
		found = found || tid == os.Getpid()
	}
	if !found {
		t.Errorf("own thread list %v lacks the main thread %d", tids, os.Getpid())
	}
	st, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Tgid != os.Getpid() || st.TracerPid != 0 || st.Threads < 1 || st.Name == "" {
		t.Errorf("own status %+v", st)
	}
	// A reaped child is gone: every reader says so with ErrNoProcess.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	if _, err := ReadMaps(gone); !errors.Is(err, ErrNoProcess) {
		t.Errorf("maps of a gone process: %v", err)
	}
	if _, err := Threads(gone); !errors.Is(err, ErrNoProcess) {
		t.Errorf("threads of a gone process: %v", err)
	}
	if err := ReadMem(gone, 0x1000, make([]byte, 4)); !errors.Is(err, ErrNoProcess) {
		t.Errorf("memory of a gone process: %v", err)
	}
}

func TestParseStatusRejectsBadNumbers(t *testing.T) {
	if _, err := ParseStatus([]byte("Name:\tx\nTracerPid:\tabc\n")); err == nil {
		t.Error("bad TracerPid accepted")
	}
	st, err := ParseStatus([]byte("Name:\tgdb target\nTracerPid:\t42\n"))
	if err != nil || st.TracerPid != 42 || st.Name != "gdb target" {
		t.Errorf("%+v %v", st, err)
	}
}

func TestMain(m *testing.M) { testutil.Main(m) }

func TestLiveThreadOfSelf(t *testing.T) {
	tid, err := LiveThread(os.Getpid())
	if err != nil || tid != os.Getpid() {
		t.Fatalf("live thread of self: %d %v", tid, err)
	}
	st, err := ThreadState(os.Getpid(), os.Getpid())
	if err != nil || (st != 'R' && st != 'S') {
		t.Fatalf("own state %c %v", st, err)
	}
}

func TestLastCPUOfSelf(t *testing.T) {
	cpu, err := LastCPU(os.Getpid(), os.Getpid())
	if err != nil || cpu < 0 || cpu >= 4096 {
		t.Fatalf("last CPU of self: %d %v", cpu, err)
	}
}

func TestParseStatThreads(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseStatThreads(b)
	st, _ := ReadStatus(os.Getpid())
	if err != nil || n < 1 || n > st.Threads+64 {
		t.Fatalf("num_threads %d (%v), status says %d", n, err, st.Threads)
	}
	// A command name with spaces and parentheses does not shift fields.
	odd := []byte("42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 7 0 1 2 3")
	if n, err := ParseStatThreads(odd); err != nil || n != 7 {
		t.Fatalf("odd command name: %d %v", n, err)
	}
	if _, err := ParseStatThreads([]byte("42 (x) S 1")); err == nil {
		t.Fatal("short stat accepted")
	}
}
