package daemon

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// scope decides which processes the daemon may touch.
type scope struct {
	tree, self int
	// memo remembers the answer per pid and start time: ancestry does
	// not change, except by reparenting to an ancestor outside the tree,
	// which keeps a process that was in the tree in it.
	memo map[int]scopeEntry
}

type scopeEntry struct {
	start uint64
	in    bool
}

func newScope(tree, self int) *scope {
	return &scope{tree: tree, self: self, memo: map[int]scopeEntry{}}
}

// contains reports whether pid (with identity id) is the daemon's to
// patch. Called with d.mu held.
func (s *scope) contains(pid int, id proc.Identity) bool {
	if pid == s.self || pid <= 1 {
		return false
	}
	if s.tree == 0 {
		return true
	}
	if e, ok := s.memo[pid]; ok && e.start == id.StartTime {
		return e.in
	}
	in := false
	p, pid0 := id.PPid, pid
	for depth := 0; depth < 256; depth++ {
		if pid0 == s.tree || p == s.tree {
			in = true
			break
		}
		if p <= 1 {
			break
		}
		if e, ok := s.memo[p]; ok {
			// The memo for an ancestor is current as long as it lives;
			// a stale one only errs towards "out".
			in = e.in || p == s.tree
			break
		}
		pi, err := proc.ReadIdentity(p)
		if err != nil {
			break
		}
		pid0, p = p, pi.PPid
	}
	s.memo[pid] = scopeEntry{start: id.StartTime, in: in}
	return in
}

func (s *scope) forget(pid int) { delete(s.memo, pid) }

// buildIDCache maps a mapped file (device and inode) to its build-id, so
// that a scan of a thousand processes reads libc's once.
type buildIDCache struct {
	mu sync.Mutex
	m  map[string]string // "" for files without one (data files)
}

func newBuildIDCache() *buildIDCache { return &buildIDCache{m: map[string]string{}} }

func (c *buildIDCache) get(pid int, m proc.Mapping) string {
	key := fmt.Sprintf("%s:%d", m.Dev, m.Inode)
	c.mu.Lock()
	id, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return id
	}
	for _, path := range []string{proc.MappedFile(pid, m), fmt.Sprintf("/proc/%d/root%s", pid, m.Path)} {
		if b, err := elfobj.BuildIDOfFile(path); err == nil {
			id = hexID(b)
			break
		}
	}
	c.mu.Lock()
	c.m[key] = id
	c.mu.Unlock()
	return id
}

// procState is what the daemon knows of one process in scope.
type procState struct {
	pid int
	id  proc.Identity
	exe string
	// fp is a fingerprint of the file mappings: when it changes (a
	// dlopen, an exec) the objects and regions are read again.
	fp string
	// objects maps the build-ids of the loaded objects to their paths.
	objects map[string]string
	// regions are the patches read back from the process.
	regions []regionView
	// stale asks for regions to be read again at the next scan.
	stale bool
	// busy is set while a goroutine works on the process.
	busy bool
	// failed are the failures per store file; removals per patch id.
	failed map[string]*failure
	// inexec is set while the exec watch holds the process.
	inexec bool
}

type regionView struct {
	id, buildID string
	level       uint32
	pauseUS     int64
	at          time.Time
	seq         uint64
}

type failure struct {
	err      string
	attempts int
	next     time.Time
}

// snapshot is what one read of /proc tells about a process.
type snapshot struct {
	fp      string
	changed bool
	objects map[string]string
	regions []regionView
	exe     string
}

// readSnapshot reads the file mappings of pid; when their fingerprint
// differs from oldFP, or force is set, it also reads the build-ids of the
// loaded objects and the patch regions. It takes no lock: the scan reads
// a thousand processes without holding up status or the workers.
func (d *Daemon) readSnapshot(pid int, oldFP string, force bool) (*snapshot, error) {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	var fp strings.Builder
	for _, m := range maps {
		if m.IsFile() {
			fmt.Fprintf(&fp, "%x:%s:%d;", m.Start, m.Dev, m.Inode)
		}
	}
	sn := &snapshot{fp: fp.String()}
	if sn.fp == oldFP && !force {
		return sn, nil
	}
	sn.changed = true
	sn.objects = map[string]string{}
	for _, m := range maps {
		if !m.IsFile() || m.Offset != 0 {
			continue
		}
		if id := d.ids.get(pid, m); id != "" {
			if _, ok := sn.objects[id]; !ok {
				sn.objects[id] = m.Path
			}
		}
	}
	regions, err := patcher.FindRegions(pid, maps)
	if err != nil {
		return nil, err
	}
	for _, r := range regions {
		sn.regions = append(sn.regions, regionView{id: r.ID(), buildID: r.BuildID(), level: r.Level(),
			pauseUS: r.PauseUS(), at: r.AppliedAt(), seq: r.Seq()})
	}
	if exe, err := proc.Exe(pid); err == nil {
		sn.exe = exe
	}
	return sn, nil
}

// take records a snapshot. Called with d.mu held.
func (st *procState) take(sn *snapshot) {
	st.fp = sn.fp
	if sn.changed {
		st.objects, st.regions, st.stale = sn.objects, sn.regions, false
		if sn.exe != "" {
			st.exe = sn.exe
		}
	}
}

// readProcess refreshes st in place. Called with d.mu held, for one
// process at a time (a worker's or the exec watch's own).
func (d *Daemon) readProcess(st *procState) error {
	sn, err := d.readSnapshot(st.pid, st.fp, st.stale)
	if err != nil {
		return err
	}
	st.take(sn)
	return nil
}
