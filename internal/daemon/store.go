package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// scanStore brings d.patches in line with the files of the store. A file
// is read again when its size or modification time changed. It returns
// whether anything changed. Called with d.mu held.
func (d *Daemon) scanStore() bool {
	ents, err := os.ReadDir(d.opt.Store)
	if err != nil {
		// A store that vanished is an empty desired state only if the
		// operator meant it; keep the last picture and say so.
		d.report(slog.LevelError, "read the patch store", "store", d.opt.Store, "err", err)
		return false
	}
	changed := false
	seen := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".hpatch") || strings.HasPrefix(name, ".") {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		seen[name] = true
		if sp, ok := d.patches[name]; ok && sp.modTime.Equal(info.ModTime()) && sp.size == info.Size() {
			continue
		}
		sp := &storePatch{file: name, modTime: info.ModTime(), size: info.Size()}
		p, sig, err := d.opt.Open(filepath.Join(d.opt.Store, name))
		sp.sig = sig
		if err != nil {
			sp.reason = oneLine(err)
			d.report(slog.LevelWarn, "reject patch file", "file", name, "reason", sp.reason)
		} else {
			sp.patch, sp.buildID = p, hexID(p.BuildID)
			d.report(slog.LevelInfo, "patch file", "file", name, "id", p.ID, "level", p.Level, "build_id", sp.buildID)
		}
		d.patches[name] = sp
		changed = true
	}
	for name := range d.patches {
		if !seen[name] {
			delete(d.patches, name)
			d.report(slog.LevelInfo, "patch file removed", "file", name)
			changed = true
		}
	}
	if changed {
		d.resolveLevels()
	}
	return changed
}

// resolveLevels rejects a file when another one holds a higher level of
// the same patch for the same object: only one level can be the desired
// state. Called with d.mu held.
func (d *Daemon) resolveLevels() {
	best := map[string]*storePatch{}
	names := make([]string, 0, len(d.patches))
	for name := range d.patches {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sp := d.patches[name]
		if sp.patch == nil {
			continue
		}
		if strings.HasPrefix(sp.reason, "superseded") {
			sp.reason = ""
		}
		key := sp.buildID + "\x00" + sp.patch.ID
		if b, ok := best[key]; !ok || sp.patch.Level > b.patch.Level {
			best[key] = sp
		}
	}
	active := 0
	for _, name := range names {
		sp := d.patches[name]
		if sp.patch == nil {
			continue
		}
		b := best[sp.buildID+"\x00"+sp.patch.ID]
		if b != sp {
			sp.reason = fmt.Sprintf("superseded by level %d of %s in %s", b.patch.Level, sp.patch.ID, b.file)
		} else {
			active++
		}
	}
	d.active.Store(int32(active))
}

// wants returns the patches a process with these loaded build-ids should
// carry. Called with d.mu held.
func (d *Daemon) wants(objects map[string]string) []want {
	var out []want
	for _, sp := range d.patches {
		if !sp.active() {
			continue
		}
		if _, ok := objects[sp.buildID]; ok {
			out = append(out, want{file: sp.file, id: sp.patch.ID, buildID: sp.buildID, level: sp.patch.Level})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	return out
}

// watchStore asks for a scan as soon as a file in the store is written,
// renamed or removed, instead of at the next tick; the tick stays as the
// fallback (inotify queues can overflow, and some file systems do not
// notify). It returns a function that stops the watch.
func (d *Daemon) watchStore() (func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch the patch store %s: %w", d.opt.Store, err)
	}
	if _, err := unix.InotifyAddWatch(fd, d.opt.Store, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch the patch store %s: %w", d.opt.Store, err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			d.pokeStore()
		}
	}()
	return func() { f.Close(); <-done }, nil
}
