// Command soak applies and removes a patch many times in a row on a
// target with hot and blocked threads, with the default options, and
// reports how many calls failed, the distribution of the pauses, how many
// calls had to wait for a thread to leave the function (return hooks) and
// whether mappings leaked.
//
// The target is the e2e hot-threads fixture (e2e/testdata/safety/hot):
// 8 threads call hot() in tight loops and -blocked threads block in read,
// futex and nanosleep, in turn; the main thread waits in read for
// requests. The patch is made by hotpatch build from the fixture's diff.
// At the end the target reports whether any call of hot() returned a
// value that is neither the old nor the new one, and whether any blocking
// call failed with EINTR.
//
//	go run ./bench/soak [-n 1000] [-blocked 8]
//
// It needs gcc, make and ptrace rights over its own children.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

func main() {
	n := flag.Int("n", 1000, "patch/unpatch cycles")
	blocked := flag.Int("blocked", 8, "threads blocked in system calls")
	flag.Parse()
	if err := run(*n, *blocked); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(n, blocked int) error {
	dir, err := os.MkdirTemp("", "hotpatch-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fixture := filepath.Join("e2e", "testdata", "safety", "hot")
	src := filepath.Join(dir, "src")
	if err := exec.Command("cp", "-r", filepath.Join(fixture, "src"), src).Run(); err != nil {
		return fmt.Errorf("copy the fixture (run from the repository root): %w", err)
	}
	if err := exec.Command("cp", filepath.Join("e2e", "testdata", "common", "harness.h"), src).Run(); err != nil {
		return err
	}
	hp := filepath.Join(dir, "hotpatch")
	steps := [][]string{
		{"go", "build", "-o", hp, "./cmd/hotpatch"},
		{"make", "-C", src},
	}
	diff, err := filepath.Abs(filepath.Join(fixture, "fix.diff"))
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "patches")
	steps = append(steps, []string{hp, "build", "-C", src, "-o", out, "--id", "soak", "--target", filepath.Join(src, "prog"), diff})
	for _, s := range steps {
		if b, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, b)
		}
	}
	ents, err := os.ReadDir(out)
	if err != nil || len(ents) != 1 {
		return fmt.Errorf("want one patch in %s: %v", out, err)
	}
	patch, err := patchfile.ReadFile(filepath.Join(out, ents[0].Name()))
	if err != nil {
		return err
	}

	cmd := exec.Command(filepath.Join(src, "prog"), fmt.Sprint(blocked))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "ready") {
		return fmt.Errorf("the target did not start")
	}
	pid := cmd.Process.Pid
	threads, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	before, err := countMaps(pid)
	if err != nil {
		return err
	}

	opt := patcher.Options{Retries: 10, Timeout: 5 * time.Second} // the command line's defaults
	var pauses, stops []int64
	failures, waited := 0, 0
	start := time.Now()
	for i := 0; i < n; i++ {
		for _, op := range []string{"patch", "unpatch"} {
			var res *patcher.Result
			var err error
			if op == "patch" {
				res, err = patcher.Apply(pid, []*patchfile.Patch{patch}, opt)
			} else {
				res, err = patcher.Unpatch(pid, "", opt)
			}
			if err != nil {
				failures++
				fmt.Fprintf(os.Stderr, "cycle %d %s: %v\n", i, op, err)
				continue
			}
			pauses = append(pauses, res.PauseUS)
			stops = append(stops, res.ThreadStopUS)
			if res.Retries > 0 {
				waited++
			}
		}
	}
	elapsed := time.Since(start)
	after, err := countMaps(pid)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return err
	}
	report := ""
	for lines.Scan() && lines.Text() != "--end--" {
		report += lines.Text() + " "
	}
	fmt.Printf("target: %d threads (8 hot, %d blocked, main); %d cycles in %v\n", len(threads), blocked, n, elapsed.Round(time.Second))
	fmt.Printf("failed calls: %d of %d; calls that waited for a frame (retries > 0): %d\n", failures, 2*n, waited)
	fmt.Printf("pause_us: %s\n", dist(pauses))
	fmt.Printf("thread_stop_us: %s\n", dist(stops))
	fmt.Printf("mappings: %d before, %d after (leaked: %d)\n", before, after, after-before)
	fmt.Printf("target's report: %s\n", strings.TrimSpace(report))
	return nil
}

func countMaps(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	return strings.Count(string(b), "\n"), err
}

func dist(v []int64) string {
	if len(v) == 0 {
		return "no data"
	}
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) int64 { return s[int(p*float64(len(s)-1))] }
	return fmt.Sprintf("n=%d p50=%d p90=%d p99=%d max=%d", len(s), q(0.5), q(0.9), q(0.99), s[len(s)-1])
}
