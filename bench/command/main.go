// Command command measures the pause that `hotpatch patch` and
// `hotpatch unpatch` cause in a running program as a user runs them: the
// built binary is started as a separate process, and the program's threads
// log every gap they see while it runs.
//
// It compiles a probe (testdata/probe.c) whose threads spin on
// clock_gettime, or sleep 1 ms at a time, and log each gap longer than a
// threshold into a shared file, and starts it with 1, 8 and 64 threads:
// "sleep" has one spinning thread and the rest sleeping, "spin" has every
// thread spinning. For each configuration it alternately waits (the idle
// window, as long as the last command took: the noise floor) and runs
// `patch --json` and `unpatch --json`, n times each, and prints per
// operation the median and 90th percentile of:
//
//   - gap: the longest gap any thread logged during the command (from
//     just before its start to its exit);
//   - idle: the same over the idle window just before;
//   - pause_us and thread_stop_us, as the command's JSON reports them;
//   - wall: the command's wall time, start to exit, as the caller sees it;
//   - cpu: the user and system time the command used (less sensitive to
//     the machine's load than wall).
//
// With -spread, it also prints the distribution of every thread's own
// largest gap during the commands, beside the idle one.
//
// Several binaries can be compared in one run (-bin old=PATH,new=PATH):
// they take turns within each cycle, so each sees the same load. A
// variant may add environment variables: -bin 'gm1=PATH?GOMAXPROCS=1&GOGC=off'.
//
//	go run ./bench/command [-n 20] [-threads 1,8,64] [-modes sleep,spin] [-bin NAME=PATH,...]
//
// It needs gcc, go (unless -bin is given) and ptrace rights over other
// processes (root, or CAP_SYS_PTRACE, or kernel.yama.ptrace_scope=0).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher/patchertest"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"golang.org/x/sys/unix"
)

const patchSource = `int work_hp(int x) { return x + 2; }`

// variant is one way of running the command: a binary and the
// environment it gets on top of the bench's.
type variant struct {
	name, path string
	env        []string
}

func main() {
	n := flag.Int("n", 20, "patch/unpatch cycles per configuration")
	threadList := flag.String("threads", "1,8,64", "thread counts")
	modeList := flag.String("modes", "sleep,spin", "thread behaviours: sleep (one spinner, the rest sleeping) and spin (all spinning)")
	bins := flag.String("bin", "", "hotpatch binaries to compare, NAME=PATH,... (default: build ./cmd/hotpatch)")
	threshold := flag.Duration("threshold", 10*time.Microsecond, "the shortest gap the probe logs")
	spread := flag.Bool("spread", false, "also print the distribution of every thread's largest gap")
	flag.Parse()
	if err := run(*n, *threadList, *modeList, *bins, *threshold, *spread); err != nil {
		fmt.Fprintln(os.Stderr, "command:", err)
		os.Exit(1)
	}
}

func run(n int, threadList, modeList, bins string, threshold time.Duration, spread bool) error {
	dir, err := os.MkdirTemp("", "hotpatch-command-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	variants, err := binaries(dir, bins)
	if err != nil {
		return err
	}
	src, err := probeSource()
	if err != nil {
		return err
	}
	probe := filepath.Join(dir, "probe")
	if out, err := exec.Command("gcc", "-O2", "-pthread", "-o", probe, src).CombinedOutput(); err != nil {
		return fmt.Errorf("build the probe: %v\n%s", err, out)
	}
	patchPath, err := writePatch(dir, probe)
	if err != nil {
		return err
	}
	fmt.Printf("%-7s %-5s %-8s %-7s %-15s %-15s %-15s %-15s %-13s %-13s %s\n", "threads", "mode", "binary", "op",
		"gap µs p50/p90", "idle µs p50/p90", "pause_us", "thread_stop_us", "wall ms", "cpu ms", "failures")
	for _, ts := range strings.Split(threadList, ",") {
		threads, err := strconv.Atoi(ts)
		if err != nil {
			return fmt.Errorf("-threads: %q", ts)
		}
		for _, mode := range strings.Split(modeList, ",") {
			c := config{probe: probe, patch: patchPath, shm: filepath.Join(dir, "gaps"), threads: threads,
				mode: mode, threshold: threshold, variants: variants}
			if err := c.measure(n, spread); err != nil {
				return err
			}
		}
	}
	return nil
}

// binaries parses -bin, or builds the command from this tree.
func binaries(dir, list string) ([]variant, error) {
	if list == "" {
		bin := filepath.Join(dir, "hotpatch")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/hotpatch").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build hotpatch (run from the repository root, or pass -bin): %v\n%s", err, out)
		}
		return []variant{{name: "tree", path: bin}}, nil
	}
	var vs []variant
	for _, item := range strings.Split(list, ",") {
		spec, envs, _ := strings.Cut(item, "?")
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			name, path = filepath.Base(spec), spec
		}
		var env []string
		if envs != "" {
			env = strings.Split(envs, "&")
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("-bin %s: %w", item, err)
		}
		vs = append(vs, variant{name, path, env})
	}
	return vs, nil
}

// probeSource finds probe.c beside this file, whether run with go run
// from the repository root or from this folder.
func probeSource() (string, error) {
	for _, p := range []string{"bench/command/testdata/probe.c", "testdata/probe.c"} {
		if _, err := os.Stat(p); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("testdata/probe.c not found: run from the repository root")
}

func writePatch(dir, probe string) (string, error) {
	src := filepath.Join(dir, "patch.c")
	obj := filepath.Join(dir, "patch.o")
	if err := os.WriteFile(src, []byte(patchSource), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("gcc", "-O2", "-c", "-o", obj, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the patch: %v\n%s", err, out)
	}
	p, err := patchertest.FromObject(obj, patchertest.Spec{ID: "bench", Level: 1, Target: probe,
		Replace: map[string]string{"work": "work_hp"}})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bench.hpatch")
	return path, patchfile.WriteFile(path, p)
}

type config struct {
	probe, patch, shm string
	threads           int
	mode              string
	threshold         time.Duration
	variants          []variant
}

// series collects one row of the table.
type series struct {
	gap, idle, pause, stop, wall, cpu samples
	// perThread and idleThread pool every thread's largest gap.
	perThread, idleThread samples
	failures              int
}

func (c config) measure(n int, spread bool) error {
	cmd := exec.Command(c.probe, strconv.Itoa(c.threads), c.mode, c.shm, strconv.FormatInt(c.threshold.Nanoseconds(), 10))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("probe did not start: %q %v", line, err)
	}
	log, err := openLog(c.shm)
	if err != nil {
		return err
	}
	defer log.close()
	pid := strconv.Itoa(cmd.Process.Pid)
	ops := []struct {
		name string
		args []string
	}{
		{"patch", []string{"patch", "-p", pid, "--json", "--retries", "100", "--timeout", "10s", c.patch}},
		{"unpatch", []string{"unpatch", "-p", pid, "--json"}},
	}
	rows := make([][]*series, len(c.variants))
	lastWall := make([][]time.Duration, len(c.variants))
	for v := range rows {
		rows[v] = []*series{{}, {}}
		lastWall[v] = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond}
	}
	// Let the threads start and the first faults settle. One unmeasured
	// info per variant fills the page cache (and an object cache) as a
	// first patch on a host that ran the command before would find them.
	time.Sleep(100 * time.Millisecond)
	for _, bin := range c.variants {
		info := exec.Command(bin.path, "info", "-p", pid)
		info.Env = append(os.Environ(), bin.env...)
		if out, err := info.CombinedOutput(); err != nil {
			return fmt.Errorf("%s info: %v: %s", bin.name, err, out)
		}
	}
	for i := 0; i < n; i++ {
		for v, bin := range c.variants {
			for o, op := range ops {
				ok, err := c.once(bin, op.name, op.args, rows[v][o], &lastWall[v][o], log)
				if err != nil {
					return err
				}
				if ok {
					continue
				}
				if o == 0 {
					// Nothing applied: nothing to remove.
					break
				}
				// The patch must go before the next cycle applies it
				// again; this removal is not measured.
				if err := c.cleanUp(bin, op.args); err != nil {
					return err
				}
			}
		}
	}
	for v, bin := range c.variants {
		for o, op := range ops {
			s := rows[v][o]
			fmt.Printf("%-7d %-5s %-8s %-7s %-15s %-15s %-15s %-15s %-13s %-13s %d\n", c.threads, c.mode, bin.name, op.name,
				s.gap.pct("%.0f"), s.idle.pct("%.0f"), s.pause.pct("%.0f"), s.stop.pct("%.0f"), s.wall.pct("%.1f"), s.cpu.pct("%.1f"), s.failures)
			if spread {
				fmt.Printf("        every thread's largest gap µs (p50/p90/p99/max): during %s %s, idle %s\n",
					op.name, s.perThread.spread(), s.idleThread.spread())
			}
		}
	}
	return nil
}

// once idles for as long as the command took last time, then runs it,
// and adds both to s. It reports whether the command succeeded.
func (c config) once(bin variant, op string, args []string, s *series, lastWall *time.Duration, log *gapLog) (bool, error) {
	// The idle window: what the probe sees on this machine with nothing
	// done to it.
	t0 := monotonic()
	time.Sleep(*lastWall)
	idle := log.maxGaps(t0, monotonic())
	s.idle = append(s.idle, maxOf(idle))
	s.idleThread = append(s.idleThread, idle...)

	var stdout, stderr bytes.Buffer
	run := exec.Command(bin.path, args...)
	run.Stdout, run.Stderr = &stdout, &stderr
	if bin.env != nil {
		run.Env = append(os.Environ(), bin.env...)
	}
	t0 = monotonic()
	err := run.Run()
	t1 := monotonic()
	*lastWall = time.Duration(t1 - t0)
	// A thread resumed at the end of the command logs its gap when it
	// runs again.
	time.Sleep(20 * time.Millisecond)
	if err != nil {
		s.failures++
		fmt.Fprintf(os.Stderr, "%s %s: %v: %s", bin.name, op, err, stderr.Bytes())
		return false, nil
	}
	res, err := parseOutcome(stdout.Bytes())
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", bin.name, op, err)
	}
	gaps := log.maxGaps(t0, t1)
	s.gap = append(s.gap, maxOf(gaps))
	s.perThread = append(s.perThread, gaps...)
	s.pause = append(s.pause, float64(res.PauseUS))
	s.stop = append(s.stop, float64(res.ThreadStopUS))
	s.wall = append(s.wall, float64(t1-t0)/1e6)
	used := run.ProcessState.UserTime() + run.ProcessState.SystemTime()
	s.cpu = append(s.cpu, float64(used)/1e6)
	return true, nil
}

// cleanUp removes the patch after a failed, measured removal.
func (c config) cleanUp(bin variant, args []string) error {
	var last []byte
	for try := 0; try < 20; try++ {
		out, err := exec.Command(bin.path, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s could not remove the patch: %s", bin.name, last)
}

type outcome struct {
	PauseUS      int64  `json:"pause_us"`
	ThreadStopUS int64  `json:"thread_stop_us"`
	Status       string `json:"status"`
}

func parseOutcome(b []byte) (outcome, error) {
	var doc struct {
		Processes []outcome `json:"processes"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return outcome{}, fmt.Errorf("parse the command's JSON: %w (%q)", err, b)
	}
	if len(doc.Processes) != 1 || doc.Processes[0].Status != "ok" {
		return outcome{}, fmt.Errorf("unexpected outcome %s", b)
	}
	return doc.Processes[0], nil
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

type samples []float64

func (s samples) quantile(f float64) float64 {
	c := append(samples(nil), s...)
	sort.Float64s(c)
	return c[min(len(c)-1, int(f*float64(len(c))))]
}

func (s samples) pct(format string) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+"/"+format, s.quantile(0.5), s.quantile(0.9))
}

func (s samples) spread() string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/%.0f/%.0f/%.0f", s.quantile(0.5), s.quantile(0.9), s.quantile(0.99), s.quantile(1))
}

func maxOf(s []float64) float64 {
	m := 0.0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
