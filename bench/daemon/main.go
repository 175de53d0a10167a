// Command daemon measures the patch daemon at scale and the start-up
// delay of patches before main.
//
// Fleet: it starts -n copies of a small program (testdata/target.c), runs
// the daemon in-process confined to its own children (Options.Tree),
// drops a one-function patch into the store and reports the time from
// the drop until the daemon's status shows every copy patched; then it
// removes the file and times the unpatching the same way.
//
// Start-up: it runs the program -starts times to its first output line
// with no daemon, then with a hotpatch daemon (built from this tree, run
// as its own process) watching the program's mount (a tmpfs it mounts)
// and the patch in the store, and reports the time from fork to the first
// line (median, 90th percentile, maximum). The difference is what
// patching before main costs a program's start.
//
//	go run ./bench/daemon [-n 1000] [-starts 100] [-workers N] [-v]
//
// Run it from the repository root.
//
// It needs gcc, root (fanotify, the tmpfs mount, ptrace).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hotpatch/hotpatch/internal/daemon"
	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"golang.org/x/sys/unix"
)

var (
	verbose  = flag.Bool("v", false, "print the daemon's events")
	interval = flag.Duration("interval", 500*time.Millisecond, "the daemon's scan interval")
)

const patchSource = `int work_hp(int x) { return x + 2; }`

func main() {
	n := flag.Int("n", 1000, "copies of the program to patch")
	starts := flag.Int("starts", 100, "program starts per start-up configuration")
	workers := flag.Int("workers", 0, "daemon workers (0: the daemon's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "daemon bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *starts, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "daemon bench:", err)
		os.Exit(1)
	}
}

func run(n, starts, workers int) error {
	dir, err := os.MkdirTemp("", "hotpatch-daemon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// A mount of its own, so that the exec watch sees only this
	// benchmark's programs.
	mnt := filepath.Join(dir, "bin")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
		return fmt.Errorf("mount a tmpfs: %w", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	target := filepath.Join(mnt, "target")
	src, err := filepath.Abs(filepath.Join("bench", "daemon", "testdata", "target.c"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("run from the repository root: %w", err)
	}
	if out, err := exec.Command("gcc", "-O2", "-o", target, src).CombinedOutput(); err != nil {
		return fmt.Errorf("build the target: %v\n%s", err, out)
	}
	patch, err := buildPatch(dir, target)
	if err != nil {
		return err
	}
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		return err
	}
	if err := fleet(target, patch, store, filepath.Join(dir, "fleet.sock"), n, workers); err != nil {
		return err
	}
	return startup(target, patch, store, filepath.Join(dir, "start.sock"), mnt, starts)
}

func buildPatch(dir, target string) (*patchfile.Patch, error) {
	src := filepath.Join(dir, "patch.c")
	obj := filepath.Join(dir, "patch.o")
	if err := os.WriteFile(src, []byte(patchSource), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("gcc", "-O2", "-c", "-o", obj, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the patch: %v\n%s", err, out)
	}
	return patchertest.FromObject(obj, patchertest.Spec{ID: "bench", Level: 1, Target: target,
		Replace: map[string]string{"work": "work_hp"}})
}

// applied records when the daemon reported each application.
var applied struct {
	sync.Mutex
	at   []time.Time
	took []float64
}

func startDaemon(store, socket string, watch []string, workers int) (*daemon.Daemon, func(), error) {
	d, err := daemon.New(daemon.Options{Store: store, Socket: socket, Tree: os.Getpid(), ExecWatch: watch, Workers: workers,
		Interval: *interval,
		Report: func(e daemon.Event) {
			if *verbose {
				fmt.Fprintln(os.Stderr, append([]any{time.Now().Format("15:04:05.000"), e.Msg}, e.Attrs...)...)
			}
			if e.Msg == "applied" {
				applied.Lock()
				applied.at = append(applied.at, time.Now())
				for i := 0; i+1 < len(e.Attrs); i += 2 {
					if e.Attrs[i] == "took_us" {
						applied.took = append(applied.took, float64(e.Attrs[i+1].(int64)))
					}
				}
				applied.Unlock()
			}
		}})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err = daemon.Query(socket, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			return nil, nil, err
		}
	}
	return d, func() { cancel(); <-done }, nil
}

func drop(store string, p *patchfile.Patch) (string, error) {
	b, err := patchfile.Encode(p)
	if err != nil {
		return "", err
	}
	tmp, path := filepath.Join(store, ".bench.tmp"), filepath.Join(store, "bench.hpatch")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// waitFor polls the daemon's status until ok, and returns the time taken.
func waitFor(d *daemon.Daemon, from time.Time, limit time.Duration, ok func(*daemon.Status) bool) (time.Duration, *daemon.Status, error) {
	for {
		s := d.Status()
		if ok(s) {
			return time.Since(from), s, nil
		}
		if time.Since(from) > limit {
			return 0, s, fmt.Errorf("not reached within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fleet(target string, patch *patchfile.Patch, store, socket string, n, workers int) error {
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for i := 0; i < n; i++ {
		c := exec.Command(target)
		if err := c.Start(); err != nil {
			return fmt.Errorf("start copy %d: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	// Let every copy reach its pause().
	time.Sleep(time.Duration(n)*time.Millisecond + time.Second)
	d, stopDaemon, err := startDaemon(store, socket, nil, workers)
	if err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopDaemon()
		}
	}
	defer stop()
	// The first scan has read every process before the drop.
	time.Sleep(time.Second)
	t0 := time.Now()
	path, err := drop(store, patch)
	if err != nil {
		return err
	}
	took, s, err := waitFor(d, t0, time.Minute, func(s *daemon.Status) bool {
		return len(s.Patches) == 1 && len(s.Patches[0].Applied) == n
	})
	if err != nil {
		msg := ""
		if len(s.Patches) > 0 && len(s.Patches[0].Failed) > 0 {
			msg = "; first failure: " + s.Patches[0].Failed[0].Error
		}
		return fmt.Errorf("apply to %d copies: %w (%d applied%s)", n, err, len(s.Patches[0].Applied), msg)
	}
	var pauses []float64
	for _, a := range s.Patches[0].Applied {
		pauses = append(pauses, float64(a.PauseUS))
	}
	applied.Lock()
	first, last := applied.at[0].Sub(t0), applied.at[len(applied.at)-1].Sub(t0)
	applied.Unlock()
	fmt.Printf("fleet: %d copies patched %v after the drop (first applied after %v, last after %v; pause_us p50/p90/max %s; one apply µs p50/p90/max %s)\n",
		n, took.Round(time.Millisecond), first.Round(time.Millisecond), last.Round(time.Millisecond), stats(pauses), stats(applied.took))
	t0 = time.Now()
	if err := os.Remove(path); err != nil {
		return err
	}
	took, _, err = waitFor(d, t0, time.Minute, func(s *daemon.Status) bool {
		return len(s.Patches) == 0 && carrying(cmds) == 0
	})
	if err != nil {
		return fmt.Errorf("unpatch %d copies: %w", n, err)
	}
	fmt.Printf("fleet: %d copies unpatched %v after the removal\n", n, took.Round(time.Millisecond))
	stop()
	// The baseline under the same load: what hotpatch patch does, one
	// process after the other.
	t0 = time.Now()
	for _, c := range cmds {
		if _, err := patcher.Apply(c.Process.Pid, []*patchfile.Patch{patch}, patcher.Options{Retries: 5, Timeout: time.Second}); err != nil {
			return fmt.Errorf("sequential apply to pid %d: %w", c.Process.Pid, err)
		}
	}
	fmt.Printf("sequential (as hotpatch patch does): %d copies patched in %v\n", n, time.Since(t0).Round(time.Millisecond))
	return nil
}

// carrying counts copies that still carry a patch region, read from the
// processes as the daemon does.
func carrying(cmds []*exec.Cmd) int {
	n := 0
	for _, c := range cmds {
		maps, err := proc.ReadMaps(c.Process.Pid)
		if err != nil {
			continue
		}
		if rs, err := patcher.FindRegions(c.Process.Pid, maps); err == nil && len(rs) > 0 {
			n++
		}
	}
	return n
}

// startup runs the daemon as its own process, as deployed: a daemon must
// never itself exec a program on a mount it watches (Go's os/exec uses
// vfork, and the vforking thread would wait for an answer that the
// runtime, stopping the world for a collection, cannot give).
func startup(target string, patch *patchfile.Patch, store, socket, mnt string, starts int) error {
	if starts <= 0 {
		return nil
	}
	plain, err := timeStarts(target, starts, "2")
	if err != nil {
		return err
	}
	bin := filepath.Join(filepath.Dir(store), "hotpatch")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/hotpatch").CombinedOutput(); err != nil {
		return fmt.Errorf("build hotpatch: %v\n%s", err, out)
	}
	if _, err := drop(store, patch); err != nil {
		return err
	}
	d := exec.Command(bin, "daemon", "--store", store, "--socket", socket, "--tree", fmt.Sprint(os.Getpid()),
		"--exec-watch", mnt)
	if *verbose {
		d.Stderr = os.Stderr
	}
	if err := d.Start(); err != nil {
		return err
	}
	defer func() {
		_ = d.Process.Signal(unix.SIGTERM)
		_ = d.Wait()
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := daemon.Query(socket, time.Second)
		if err == nil && len(s.Patches) == 1 && s.Patches[0].State == "active" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not take the patch: %v", err)
		}
	}
	patched, err := timeStarts(target, starts, "3")
	if err != nil {
		return err
	}
	fmt.Printf("start-up to the first line, µs p50/p90/max: no daemon %s; patched before main %s\n", stats(plain), stats(patched))
	return nil
}

// timeStarts runs the target to its first line and checks that line.
func timeStarts(target string, n int, want string) ([]float64, error) {
	var out []float64
	for i := 0; i < n; i++ {
		c := exec.Command(target, "once")
		r, err := c.StdoutPipe()
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := c.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(r).ReadString('\n')
		took := time.Since(t0)
		_ = c.Wait()
		if err != nil || strings.TrimSpace(line) != "ready "+want {
			return nil, fmt.Errorf("start %d printed %q (%v), want \"ready %s\"", i, line, err, want)
		}
		out = append(out, float64(took.Microseconds()))
	}
	return out, nil
}

func stats(s []float64) string {
	if len(s) == 0 {
		return "-"
	}
	sort.Float64s(s)
	q := func(f float64) float64 { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return fmt.Sprintf("%.0f/%.0f/%.0f", q(0.5), q(0.9), s[len(s)-1])
}
