// Package demo runs the live patching demo that the README's first command
// shows: a small TCP service with a Heartbleed-style bug is built, started
// and kept busy by a client; the fix is built with `hotpatch build` and
// applied with `hotpatch patch` while the client keeps going; then it is
// removed again. Every step runs the real command line, as a user would.
package demo

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed service
var serviceFiles embed.FS

// Options configure a demo run.
type Options struct {
	// Hotpatch is the path of the hotpatch binary whose commands the demo
	// runs.
	Hotpatch string
	// Dir is where the service is built; empty means a new temporary
	// folder, removed at the end unless Keep is set.
	Dir  string
	Keep bool
	// Out receives the narration.
	Out io.Writer
}

// Result is what the demo measured, for its own test.
type Result struct {
	LeakBefore     string
	ReplyPatched   string
	ReplyUnpatched string
	PauseMicros    float64
	ClientRequests int
	ClientFailures int
	ClientMaxWait  time.Duration
	// ServiceStderr is what the service complained about; it reports
	// any EINTR it sees there.
	ServiceStderr string
}

const crafted = "PING 100 hi"

// Run runs the demo from start to end and stops everything it started,
// even on failure.
func Run(ctx context.Context, o Options) (*Result, error) {
	d := &demo{Options: o, res: &Result{}}
	if d.Dir == "" {
		dir, err := os.MkdirTemp("", "hotpatch-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		d.Dir = dir
		if !d.Keep {
			defer os.RemoveAll(dir)
		}
	}
	defer d.stopAll()
	if err := d.run(ctx); err != nil {
		return d.res, err
	}
	return d.res, nil
}

type demo struct {
	Options
	res     *Result
	service *exec.Cmd
	stderr  lockedBuffer
	addr    string
	client  *client
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.Out, format+"\n", args...) }

func (d *demo) step(n int, format string, args ...any) {
	d.say("\n[%d/7] "+format, append([]any{n}, args...)...)
}

func (d *demo) run(ctx context.Context) error {
	d.say("hotpatch demo: fixing a Heartbleed-style bug in a running service, without a restart")

	d.step(1, "Building echod, a small TCP service, with make (CFLAGS=-O2 -g) in %s", d.Dir)
	if err := d.unpack(); err != nil {
		return err
	}
	if _, err := d.command(ctx, "make", "-C", d.Dir); err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return fmt.Errorf("demo: find a free port: %w", err)
	}
	d.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := d.startService(ctx, port); err != nil {
		return err
	}
	d.client = startClient(d.addr)
	d.step(2, "Started echod (pid %d) on %s; a client sends PING requests in the background", d.service.Process.Pid, d.addr)

	d.step(3, "The bug: PING trusts the length the client claims. A crafted request:")
	leak, err := request(d.addr, crafted)
	if err != nil {
		return err
	}
	d.res.LeakBefore = leak
	d.say("    > %s\n    < %s", crafted, leak)
	if strings.Contains(leak, "SECRET-KEY") {
		d.say("    The reply carries the service's signing key from the memory next to the buffer.")
	}

	d.step(4, "Building the fix from the source diff, against the very binary that runs:")
	patchDir := filepath.Join(d.Dir, "patchroot")
	build := []string{"build", "-C", d.Dir, "-o", patchDir, "--id", "CVE-DEMO-0001",
		"--description", "echod: bound the PING length by the payload",
		"--target", filepath.Join(d.Dir, "echod"), filepath.Join(d.Dir, "fix-heartbeat.diff")}
	d.say("    $ hotpatch %s", strings.Join(build, " "))
	if _, err := d.hotpatch(ctx, true, build...); err != nil {
		return err
	}

	pid := strconv.Itoa(d.service.Process.Pid)
	d.step(5, "Applying it to the running service:")
	d.say("    $ hotpatch patch -p %s %s", pid, patchDir)
	out, err := d.hotpatch(ctx, false, "patch", "-p", pid, "--json", patchDir)
	if err != nil {
		return err
	}
	d.res.PauseMicros = maxPause(out)
	d.say("    applied; the service was paused for %.0f µs", d.res.PauseMicros)
	info, err := d.hotpatch(ctx, false, "info", "-p", pid)
	if err != nil {
		return err
	}
	d.say("    $ hotpatch info -p %s\n%s", pid, indent(info))

	d.step(6, "The same crafted request, answered by the patched code:")
	fixed, err := request(d.addr, crafted)
	if err != nil {
		return err
	}
	d.res.ReplyPatched = fixed
	d.say("    > %s\n    < %s", crafted, fixed)
	ok, failed, maxWait := d.client.stats()
	d.res.ClientRequests, d.res.ClientFailures, d.res.ClientMaxWait = ok, failed, maxWait
	d.say("    The background client sent %d requests so far: %d failed; its slowest reply took %v.",
		ok+failed, failed, maxWait.Round(10*time.Microsecond))

	d.step(7, "Removing the patch and stopping everything the demo started:")
	d.say("    $ hotpatch unpatch -p %s", pid)
	if _, err := d.hotpatch(ctx, false, "unpatch", "-p", pid); err != nil {
		return err
	}
	back, err := request(d.addr, crafted)
	if err != nil {
		return err
	}
	d.res.ReplyUnpatched = back
	d.say("    > %s\n    < %s   (the original code again)", crafted, back)
	d.say("\nDone. To patch your own program, see \"Patching your own program\" in README.md.")
	return nil
}

func (d *demo) unpack() error {
	return fs.WalkDir(serviceFiles, "service", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := serviceFiles.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(d.Dir, strings.TrimPrefix(path, "service/"))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("demo: unpack the service: %w", err)
		}
		return nil
	})
}

// command runs a program and returns its output; on failure the error
// carries the last line it printed.
func (d *demo) command(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "CFLAGS=-O2 -g")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("demo: %s %s: %v: %s", name, strings.Join(args, " "), err, lastLine(string(out)))
	}
	return string(out), nil
}

// hotpatch runs one hotpatch command; show echoes its output.
func (d *demo) hotpatch(ctx context.Context, show bool, args ...string) (string, error) {
	out, err := d.command(ctx, d.Hotpatch, args...)
	if show || err != nil {
		d.say("%s", indent(out))
	}
	return out, err
}

func (d *demo) startService(ctx context.Context, port int) error {
	cmd := exec.Command(filepath.Join(d.Dir, "echod"), strconv.Itoa(port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = &d.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("demo: start echod: %w", err)
	}
	d.service = cmd
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("demo: echod did not start: %w", err)
			return
		}
		if !strings.Contains(line, "listening") {
			ready <- fmt.Errorf("demo: echod said %q", line)
			return
		}
		ready <- nil
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("demo: echod did not start within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *demo) stopAll() {
	if d.client != nil {
		d.client.stop()
	}
	if d.service != nil && d.service.Process != nil {
		d.service.Process.Kill()
		d.service.Wait()
		d.res.ServiceStderr = d.stderr.String()
		if d.res.ServiceStderr != "" {
			d.say("echod reported on stderr:\n%s", indent(d.res.ServiceStderr))
		}
	}
}

// lockedBuffer collects a child's output while the demo goes on.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// request sends one line on a new connection and returns the reply line.
func request(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("demo: connect to echod: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", fmt.Errorf("demo: send to echod: %w", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("demo: read from echod: %w", err)
	}
	return strings.TrimRight(reply, "\n"), nil
}

// client keeps one connection busy with well-formed requests and counts
// what it sees, to show that patching loses nothing.
type client struct {
	mu             sync.Mutex
	ok, failed     int
	maxWait        time.Duration
	done, finished chan struct{}
}

func startClient(addr string) *client {
	c := &client{done: make(chan struct{}), finished: make(chan struct{})}
	go c.loop(addr)
	return c
}

func (c *client) loop(addr string) {
	defer close(c.finished)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		c.mu.Lock()
		c.failed++
		c.mu.Unlock()
		return
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		start := time.Now()
		conn.SetDeadline(start.Add(5 * time.Second))
		_, err := fmt.Fprintf(conn, "PING 4 ping\n")
		var reply string
		if err == nil {
			reply, err = r.ReadString('\n')
		}
		wait := time.Since(start)
		c.mu.Lock()
		if err == nil && reply == "PONG ping\n" {
			c.ok++
		} else {
			c.failed++
		}
		if wait > c.maxWait {
			c.maxWait = wait
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (c *client) stats() (ok, failed int, maxWait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok, c.failed, c.maxWait
}

func (c *client) stop() {
	close(c.done)
	<-c.finished
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// maxPause is the largest pause_us of the processes that `hotpatch patch
// --json` reports on.
func maxPause(out string) float64 {
	var doc struct {
		Processes []struct {
			PauseUS float64 `json:"pause_us"`
		} `json:"processes"`
	}
	var best float64
	if json.Unmarshal([]byte(out), &doc) == nil {
		for _, p := range doc.Processes {
			best = max(best, p.PauseUS)
		}
	}
	return best
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
