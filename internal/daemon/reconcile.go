package daemon

import (
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/hotpatch/hotpatch/internal/patcher"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// scan reads the store and the processes in scope and starts the work
// that brings each process in line.
func (d *Daemon) scan() {
	pids, err := proc.Processes()
	if err != nil {
		d.report(slog.LevelError, "list processes", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.scanStore()
	alive := make(map[int]bool, len(pids))
	now := time.Now()
	for _, pid := range pids {
		id, err := proc.ReadIdentity(pid)
		if err != nil || !d.scope.contains(pid, id) {
			continue
		}
		alive[pid] = true
		st, ok := d.procs[pid]
		if !ok || st.id.StartTime != id.StartTime {
			st = &procState{pid: pid, id: id, failed: map[string]*failure{}}
			d.procs[pid] = st
		}
		if st.busy || st.inexec {
			continue
		}
		if err := d.readProcess(st); err != nil {
			// Kernel threads have no maps; processes exit any time.
			continue
		}
		if todo := d.plan(st, now); todo != nil {
			st.busy = true
			d.jobs.Add(1)
			go d.work(st, todo)
		}
	}
	for pid, st := range d.procs {
		if !alive[pid] && !st.busy && !st.inexec {
			delete(d.procs, pid)
			d.scope.forget(pid)
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
			res, err := patcher.Apply(st.pid, []*patchfile.Patch{sp.patch}, d.opt.Patcher)
			if err == nil {
				d.report(slog.LevelInfo, "applied", "pid", st.pid, "file", sp.file, "id", sp.patch.ID,
					"level", sp.patch.Level, "pause_us", res.PauseUS)
			}
			outs = append(outs, outcome{sp.file, err})
			if errors.Is(err, proc.ErrNoProcess) {
				break
			}
		}
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range outs {
		if o.err == nil {
			delete(st.failed, o.key)
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
	if len(outs) > 0 {
		d.poke()
	}
}
