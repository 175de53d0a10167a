package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/version"
)

// Status is the document `hotpatch status --json` prints: the contract
// between the daemon and its clients (docs/daemon.md), stable within
// major version 1.
type Status struct {
	Daemon  DaemonInfo    `json:"daemon"`
	Patches []PatchStatus `json:"patches"`
}

// DaemonInfo describes the daemon that answered.
type DaemonInfo struct {
	Pid     int    `json:"pid"`
	Store   string `json:"store"`
	Socket  string `json:"socket"`
	Started string `json:"started"`
	Version string `json:"version"`
}

// PatchStatus is one file of the store and its roll-out.
type PatchStatus struct {
	File      string `json:"file"`
	ID        string `json:"id"`
	Level     uint32 `json:"level"`
	BuildID   string `json:"build_id"`
	Signature string `json:"signature"`
	// State is "active" or "rejected".
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Applied []Applied `json:"applied"`
	Failed  []Failed  `json:"failed"`
	Pending []Pending `json:"pending"`
}

// Applied is a process that carries the patch.
type Applied struct {
	Pid     int    `json:"pid"`
	Exe     string `json:"exe"`
	Object  string `json:"object"`
	PauseUS int64  `json:"pause_us"`
	At      string `json:"at"`
}

// Failed is a process where applying the patch failed; it is retried at
// NextRetry.
type Failed struct {
	Pid       int    `json:"pid"`
	Exe       string `json:"exe"`
	Error     string `json:"error"`
	Attempts  int    `json:"attempts"`
	NextRetry string `json:"next_retry"`
}

// Pending is a process that should carry the patch and does not yet.
type Pending struct {
	Pid int    `json:"pid"`
	Exe string `json:"exe"`
}

// Rolled reports whether the patch is active and applied everywhere it
// should be.
func (p *PatchStatus) Rolled() bool {
	return p.State == "active" && len(p.Failed) == 0 && len(p.Pending) == 0
}

// Status returns the daemon's current picture.
func (d *Daemon) Status() *Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.opt.Version
	if v == "" {
		v = version.Version
	}
	s := &Status{Daemon: DaemonInfo{Pid: d.self, Store: d.opt.Store, Socket: d.opt.Socket,
		Started: d.started.Format(time.RFC3339), Version: v}, Patches: []PatchStatus{}}
	pids := make([]int, 0, len(d.procs))
	for pid := range d.procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	files := make([]string, 0, len(d.patches))
	for f := range d.patches {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		sp := d.patches[f]
		ps := PatchStatus{File: f, Signature: sp.sig, State: "active",
			Applied: []Applied{}, Failed: []Failed{}, Pending: []Pending{}}
		if sp.patch != nil {
			ps.ID, ps.Level, ps.BuildID = sp.patch.ID, sp.patch.Level, sp.buildID
		}
		if !sp.active() {
			ps.State, ps.Reason = "rejected", sp.reason
			s.Patches = append(s.Patches, ps)
			continue
		}
		for _, pid := range pids {
			st := d.procs[pid]
			obj, loads := st.objects[sp.buildID]
			if !loads {
				continue
			}
			if r, ok := st.carries(sp); ok {
				ps.Applied = append(ps.Applied, Applied{Pid: pid, Exe: st.exe, Object: obj, PauseUS: r.pauseUS,
					At: r.at.UTC().Format(time.RFC3339)})
			} else if f := st.failed[sp.file]; f != nil {
				ps.Failed = append(ps.Failed, Failed{Pid: pid, Exe: st.exe, Error: f.err, Attempts: f.attempts,
					NextRetry: f.next.UTC().Format(time.RFC3339)})
			} else {
				ps.Pending = append(ps.Pending, Pending{Pid: pid, Exe: st.exe})
			}
		}
		s.Patches = append(s.Patches, ps)
	}
	return s
}

func (st *procState) carries(sp *storePatch) (regionView, bool) {
	for _, r := range st.regions {
		if r.id == sp.patch.ID && r.buildID == sp.buildID && r.level == sp.patch.Level {
			return r, true
		}
	}
	return regionView{}, false
}

// listen opens the status socket. A socket file left by a daemon that is
// gone is replaced; one that answers belongs to a running daemon.
func listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("status socket %s: another daemon answers on it; stop it first (systemctl stop hotpatch)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("status socket %s: remove the stale file: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	// Status shows which processes run what: root's business.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	return ln, nil
}

// serve answers status requests: a client writes "status\n" and reads
// one JSON document.
func (d *Daemon) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "status" {
				fmt.Fprintf(c, "{\"error\":\"unknown request %q; send \\\"status\\\"\"}\n", strings.TrimSpace(line))
				return
			}
			<-d.ready
			_ = json.NewEncoder(c).Encode(d.Status())
		}()
	}
}

// ErrUnreachable means no daemon answered on the socket.
var ErrUnreachable = errors.New("the daemon could not be reached")

// Query asks the daemon on socket for its status.
func Query(socket string, timeout time.Duration) (*Status, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, fmt.Errorf("%w on %s: %v (is it running? systemctl status hotpatch)", ErrUnreachable, socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("status\n")); err != nil {
		return nil, fmt.Errorf("%w on %s: %v (is it running? systemctl status hotpatch)", ErrUnreachable, socket, err)
	}
	var s Status
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return nil, fmt.Errorf("%w on %s: read its answer: %v (systemctl status hotpatch)", ErrUnreachable, socket, err)
	}
	return &s, nil
}
