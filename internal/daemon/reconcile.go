package daemon

import (
	"errors"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// candidates lists the pids to look at: with a tree, the tree itself
// walked through the children files (the rest of the host is never
// read); without one, every process.
func (d *Daemon) candidates() ([]int, error) {
	if d.opt.Tree == 0 {
		return proc.Processes()
	}
	out := []int{}
	queue := []int{d.opt.Tree}
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		kids, err := proc.Children(pid)
		if errors.Is(err, os.ErrNotExist) && pid == d.opt.Tree {
			// No children files (CONFIG_PROC_CHILDREN off): filter every
			// process by its ancestry instead.
			return proc.Processes()
		}
		queue = append(queue, kids...)
	}
	return out, nil
}

// fullEvery: a process already known has its maps read at every
// fullEvery-th scan (a library it dlopens is found then); new processes,
// and processes a worker or the exec watch just changed, at every scan.
const fullEvery = 2

// scan reads the store and the processes in scope and starts the work
// that brings each process in line. /proc is read without the lock.
func (d *Daemon) scan() {
	pids, err := d.candidates()
	if err != nil {
		d.report(slog.LevelError, "list processes", "err", err)
		return
	}
	type item struct {
		pid   int
		st    *procState // nil: new
		fp    string
		force bool
		id    proc.Identity
		sn    *snapshot
	}
	d.mu.Lock()
	d.scanStore()
	d.ticks++
	alive := make(map[int]bool, len(pids))
	var items []item
	for _, pid := range pids {
		st, ok := d.procs[pid]
		if !ok {
			items = append(items, item{pid: pid})
			continue
		}
		alive[pid] = true
		if st.busy || st.inexec {
			continue
		}
		if st.stale || d.ticks%fullEvery == 0 {
			items = append(items, item{pid: pid, st: st, fp: st.fp, force: st.stale})
		}
	}
	d.mu.Unlock()

	for i := range items {
		it := &items[i]
		if it.st == nil {
			id, err := proc.ReadIdentity(it.pid)
			if err != nil {
				continue
			}
			it.id = id
		}
		// Kernel threads have no maps; processes exit any time.
		it.sn, _ = d.readSnapshot(it.pid, it.fp, it.force)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for _, it := range items {
		st := it.st
		if st == nil {
			if it.sn == nil || !d.scope.contains(it.pid, it.id) {
				continue
			}
			st = d.procs[it.pid]
			if st == nil || st.id.StartTime != it.id.StartTime {
				st = &procState{pid: it.pid, id: it.id, failed: map[string]*failure{}}
				d.procs[it.pid] = st
			}
			alive[it.pid] = true
		}
		if it.sn == nil || st.busy || st.inexec || d.procs[it.pid] != st {
			continue
		}
		if it.sn.changed && it.st != nil && it.fp != "" {
			// Everything changed: an exec, or another process under a
			// reused pid, which must be in scope as well.
			id, err := proc.ReadIdentity(it.pid)
			if err != nil {
				continue
			}
			if id.StartTime != st.id.StartTime {
				if !d.scope.contains(it.pid, id) {
					delete(d.procs, it.pid)
					continue
				}
				st = &procState{pid: it.pid, id: id, failed: map[string]*failure{}}
				d.procs[it.pid] = st
			}
		}
		st.take(it.sn)
	}
	for pid, st := range d.procs {
		if !alive[pid] && !st.busy && !st.inexec {
			delete(d.procs, pid)
			d.scope.forget(pid)
		}
	}
	d.dispatch(now)
}

// dispatch starts the work every known process needs. Called with d.mu
// held.
func (d *Daemon) dispatch(now time.Time) {
	for _, st := range d.procs {
		if st.busy || st.inexec || st.objects == nil {
			continue
		}
		if todo := d.plan(st, now); todo != nil {
			st.busy = true
			d.jobs.Add(1)
			go d.work(st, todo)
		}
	}
}

// job is the work decided for one process: patches to remove (by id,
// newest first) and then patches to apply.
type job struct {
	remove []regionView
	apply  []*storePatch
}

// plan compares what st carries with what it should carry. A region that
// no store file asks for is removed, and so is a higher level than the
// store holds (it is applied again at the store's level afterwards).
// Failures wait for their back-off. Called with d.mu held.
func (d *Daemon) plan(st *procState, now time.Time) *job {
	wants := d.wants(st.objects)
	wanted := map[string]want{}
	for _, w := range wants {
		wanted[w.buildID+"\x00"+w.id] = w
	}
	j := &job{}
	have := map[string]regionView{}
	for _, r := range st.regions {
		key := r.buildID + "\x00" + r.id
		w, ok := wanted[key]
		if !ok || r.level > w.level {
			if f := st.failed["-"+r.id]; f != nil && now.Before(f.next) {
				continue
			}
			j.remove = append(j.remove, r)
			continue
		}
		have[key] = r
	}
	sort.Slice(j.remove, func(a, b int) bool { return j.remove[a].seq > j.remove[b].seq })
	for _, w := range wants {
		if r, ok := have[w.buildID+"\x00"+w.id]; ok && r.level == w.level {
			delete(st.failed, w.file)
			continue
		}
		if f := st.failed[w.file]; f != nil && now.Before(f.next) {
			continue
		}
		j.apply = append(j.apply, d.patches[w.file])
	}
	for file := range st.failed {
		if _, ok := d.patches[file]; !ok && file[0] != '-' {
			delete(st.failed, file)
		}
	}
	if len(j.remove) == 0 && len(j.apply) == 0 {
		return nil
	}
	return j
}

// work carries out a job on one process, within the bound on concurrent
// work, and records the outcome.
func (d *Daemon) work(st *procState, j *job) {
	defer d.jobs.Done()
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	type outcome struct {
		key string
		err error
	}
	var outs []outcome
	gone := false
	for _, r := range j.remove {
		_, err := patcher.Unpatch(st.pid, r.id, d.opt.Patcher)
		if err == nil {
			d.report(slog.LevelInfo, "removed", "pid", st.pid, "id", r.id, "level", r.level)
		}
		outs = append(outs, outcome{"-" + r.id, err})
		if errors.Is(err, proc.ErrNoProcess) {
			gone = true
		}
		if err != nil {
			// The next removal may depend on this one; try again later.
			break
		}
	}
	if !gone && len(outs) == len(j.remove) && (len(outs) == 0 || outs[len(outs)-1].err == nil) {
		for _, sp := range j.apply {
			t0 := time.Now()
			res, err := patcher.Apply(st.pid, []*patchfile.Patch{sp.patch}, d.opt.Patcher)
			if err == nil {
				d.report(slog.LevelInfo, "applied", "pid", st.pid, "file", sp.file, "id", sp.patch.ID,
					"level", sp.patch.Level, "pause_us", res.PauseUS, "took_us", time.Since(t0).Microseconds())
			}
			outs = append(outs, outcome{sp.file, err})
			if errors.Is(err, proc.ErrNoProcess) {
				break
			}
		}
	}
	// Read back what the process carries now, so that status is current
	// without waiting for the next scan; outside the lock, which the
	// other workers need.
	sn, snErr := d.readSnapshot(st.pid, "", true)
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range outs {
		if o.err == nil {
			delete(st.failed, o.key)
			continue
		}
		if errors.Is(o.err, proc.ErrNoProcess) {
			// It exited: nothing failed, the next scan forgets it.
			continue
		}
		f := st.failed[o.key]
		if f == nil {
			f = &failure{}
			st.failed[o.key] = f
		}
		f.attempts++
		f.err = oneLine(o.err)
		f.next = now.Add(backoff(f.attempts))
		d.report(slog.LevelWarn, "attempt failed", "pid", st.pid, "patch", o.key, "attempt", f.attempts,
			"retry_in", backoff(f.attempts).String(), "err", f.err)
	}
	st.busy, st.stale = false, true
	if snErr == nil {
		st.take(sn)
	}
}
