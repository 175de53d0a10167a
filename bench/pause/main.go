// Command pause measures the pause that applying and removing a patch
// causes in a running program, as the program itself sees it.
//
// It compiles a target (testdata/target.c) whose threads spin on clock_gettime and
// record the longest time during which no thread made progress, starts it
// with 1, 8 and 64 threads, either all spinning or one spinning and the
// rest sleeping, and applies and removes a one-function patch many times.
// For each configuration it prints the median, 90th percentile and
// maximum of the gap the target saw, of the pause the patcher measured
// (first thread stopped to last resumed, pause_us) and of the stop of the
// single thread that maps or unmaps the region (thread_stop_us), and the
// failures. "none" rows show the gaps of the idle target: the machine's
// own scheduling noise.
//
//	go run ./bench/pause [-n 30] [-threads 1,8,64] [-modes sleep,spin]
//
// It needs gcc and ptrace rights over its own children (root, or
// CAP_SYS_PTRACE, or kernel.yama.ptrace_scope=0).
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

const patchSource = `int work_hp(int x) { return x + 2; }`

func main() {
	n := flag.Int("n", 30, "patch/unpatch cycles per configuration")
	threadList := flag.String("threads", "1,8,64", "thread counts")
	modeList := flag.String("modes", "sleep,spin", "thread behaviours: sleep (one spinner, the rest sleeping) and spin (all spinning)")
	flag.Parse()
	if err := run(*n, *threadList, *modeList); err != nil {
		fmt.Fprintln(os.Stderr, "pause:", err)
		os.Exit(1)
	}
}

func run(n int, threadList, modeList string) error {
	dir, err := os.MkdirTemp("", "hotpatch-pause-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src, err := targetSource()
	if err != nil {
		return err
	}
	target := filepath.Join(dir, "target")
	if out, err := exec.Command("gcc", "-O2", "-pthread", "-o", target, src).CombinedOutput(); err != nil {
		return fmt.Errorf("build the target: %v\n%s", err, out)
	}
	patch, err := buildPatch(dir, target)
	if err != nil {
		return err
	}
	fmt.Printf("%-7s %-6s %-9s %26s %26s %26s %s\n", "threads", "mode", "op", "target gap µs (p50/p90/max)", "pause_us (p50/p90/max)", "thread_stop_us (p50/p90/max)", "failures")
	for _, ts := range strings.Split(threadList, ",") {
		threads, err := strconv.Atoi(ts)
		if err != nil {
			return fmt.Errorf("-threads: %q", ts)
		}
		for _, mode := range strings.Split(modeList, ",") {
			if err := measure(target, patch, threads, mode, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// targetSource finds target.c beside this file, whether run with go run
// from the repository root or from this folder.
func targetSource() (string, error) {
	for _, p := range []string{"bench/pause/testdata/target.c", "testdata/target.c"} {
		if _, err := os.Stat(p); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("testdata/target.c not found: run from the repository root")
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

type samples []float64

func (s samples) stats() string {
	if len(s) == 0 {
		return "-"
	}
	sort.Float64s(s)
	q := func(f float64) float64 { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return fmt.Sprintf("%.0f/%.0f/%.0f", q(0.5), q(0.9), s[len(s)-1])
}

func measure(target string, patch *patchfile.Patch, threads int, mode string, n int) error {
	cmd := exec.Command(target, strconv.Itoa(threads), mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// The target is a child, but nothing waits for it until the end:
	// a waiting goroutine would take the ptrace stops meant for the
	// patcher.
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("target did not start: %q %v", line, err)
	}
	pid := cmd.Process.Pid
	gapAddr, err := symbolAddr(pid, "max_gap")
	if err != nil {
		return err
	}
	lastAddr, err := symbolAddr(pid, "last_progress")
	if err != nil {
		return err
	}
	mem, err := proc.OpenMem(pid)
	if err != nil {
		return err
	}
	defer mem.Close()
	reset := func() error {
		var zero [8]byte
		if err := mem.WriteAt(zero[:], lastAddr); err != nil {
			return err
		}
		return mem.WriteAt(zero[:], gapAddr)
	}
	gap := func() (float64, error) {
		var b [8]byte
		if err := proc.ReadMem(pid, gapAddr, b[:]); err != nil {
			return 0, err
		}
		return float64(binary.LittleEndian.Uint64(b[:])) / 1000, nil
	}
	opt := patcher.Options{Retries: 20, Timeout: 5 * time.Second}
	var baseGap, patchGap, unpatchGap, patchPause, unpatchPause, patchStop, unpatchStop samples
	failures := 0
	settle := 30 * time.Millisecond
	for i := 0; i < n; i++ {
		// The gap with nothing done: the scheduling noise of this
		// machine for this configuration.
		if err := reset(); err != nil {
			return err
		}
		time.Sleep(settle)
		g, err := gap()
		if err != nil {
			return err
		}
		baseGap = append(baseGap, g)

		if err := reset(); err != nil {
			return err
		}
		res, err := patcher.Apply(pid, []*patchfile.Patch{patch}, opt)
		time.Sleep(settle)
		if err != nil {
			failures++
			fmt.Fprintf(os.Stderr, "apply: %v\n", err)
			continue
		}
		g, _ = gap()
		patchGap, patchPause = append(patchGap, g), append(patchPause, float64(res.PauseUS))
		patchStop = append(patchStop, float64(res.ThreadStopUS))

		if err := reset(); err != nil {
			return err
		}
		res, err = patcher.Unpatch(pid, "", opt)
		time.Sleep(settle)
		if err != nil {
			failures++
			fmt.Fprintf(os.Stderr, "unpatch: %v\n", err)
			continue
		}
		g, _ = gap()
		unpatchGap, unpatchPause = append(unpatchGap, g), append(unpatchPause, float64(res.PauseUS))
		unpatchStop = append(unpatchStop, float64(res.ThreadStopUS))
	}
	fmt.Printf("%-7d %-6s %-9s %26s %26s %26s %d\n", threads, mode, "none", baseGap.stats(), "-", "-", 0)
	fmt.Printf("%-7d %-6s %-9s %26s %26s %26s %d\n", threads, mode, "patch", patchGap.stats(), patchPause.stats(), patchStop.stats(), failures)
	fmt.Printf("%-7d %-6s %-9s %26s %26s %26s %d\n", threads, mode, "unpatch", unpatchGap.stats(), unpatchPause.stats(), unpatchStop.stats(), 0)
	return nil
}

func symbolAddr(pid int, name string) (uint64, error) {
	p, err := patcher.Inspect(pid)
	if err != nil {
		return 0, err
	}
	main := p.Objects[0]
	s, err := main.File.Lookup(name)
	if err != nil {
		return 0, err
	}
	return main.Bias + s.Value, nil
}
