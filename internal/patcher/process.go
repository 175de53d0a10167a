// Package patcher applies patch files to running processes, removes them
// and lists them. Everything that can be done while the target runs is
// done first (read /proc, open the ELF objects, resolve symbols, choose an
// address, relocate a local copy, map the region with one thread stopped
// and copy the code in); only the safety check and the jump writes happen
// while every thread is stopped. What was applied is recorded in a header
// at the start of each patch region, in the target itself, so that info
// and unpatch need nothing but the process.
package patcher

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// Object is an ELF object loaded in a process.
type Object struct {
	// Path is the file as the process maps it.
	Path string
	File *elfobj.Object
	// Bias is the difference between run-time and link-time addresses.
	Bias uint64
	// Start and End bound its file mappings.
	Start, End uint64
	// Main is set for the executable.
	Main bool
}

// Process is what the patcher learns about a process before stopping it.
type Process struct {
	Pid int
	// MemPid is a live thread through which the memory, maps and files
	// of the process are read: Pid itself unless the main thread exited.
	MemPid int
	Maps   []proc.Mapping
	// Objects are in load order: the executable first, then the
	// libraries as the dynamic linker searches them.
	Objects []*Object
	// Skipped names mapped files that could not be read as ELF objects,
	// with the reason (they cannot be patched or resolved against).
	Skipped map[string]error
}

// objectCache keeps parsed ELF objects across processes: patching "all"
// processes reads libc once.
var objectCache = struct {
	sync.Mutex
	m map[string]*elfobj.Object
}{m: map[string]*elfobj.Object{}}

// diskCache, when set, keeps object models on disk between commands;
// see UseObjectCache.
var diskCache struct {
	sync.Mutex
	c *elfobj.Cache
}

// UseObjectCache keeps the models of the ELF objects the patcher reads in
// dir, keyed by build-id, so that the next command does not parse them
// again (the C library's symbols and relocations cost about 2 ms). An
// empty dir turns the disk cache off.
func UseObjectCache(dir string) {
	diskCache.Lock()
	defer diskCache.Unlock()
	diskCache.c = nil
	if dir != "" {
		diskCache.c = &elfobj.Cache{Dir: dir}
	}
}

func parseObject(f *os.File, name string) (*elfobj.Object, error) {
	diskCache.Lock()
	c := diskCache.c
	diskCache.Unlock()
	if c != nil {
		return c.Open(f, name)
	}
	return elfobj.New(f, name)
}

func openObject(pid int, m proc.Mapping) (*elfobj.Object, error) {
	key := fmt.Sprintf("%s:%d:%s", m.Dev, m.Inode, m.Path)
	objectCache.Lock()
	o, ok := objectCache.m[key]
	objectCache.Unlock()
	if ok {
		return o, nil
	}
	// map_files reaches the very file mapped, even when it was deleted or
	// lives in another mount namespace; the path is the fallback.
	var err error
	for _, p := range []string{proc.MappedFile(pid, m), filepath.Join(fmt.Sprintf("/proc/%d/root", pid), m.Path), m.Path} {
		f, ferr := os.Open(p)
		if ferr != nil {
			err = ferr
			continue
		}
		o, err = parseObject(f, m.Path)
		f.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	objectCache.Lock()
	objectCache.m[key] = o
	objectCache.Unlock()
	return o, nil
}

// Inspect reads the maps of pid and the ELF objects it has loaded.
func Inspect(pid int) (*Process, error) {
	memPid, err := proc.LiveThread(pid)
	if err != nil {
		return nil, err
	}
	maps, err := proc.ReadMaps(memPid)
	if err != nil {
		return nil, err
	}
	exe, err := proc.Exe(memPid)
	if err != nil {
		return nil, err
	}
	p := &Process{Pid: pid, MemPid: memPid, Maps: maps, Skipped: map[string]error{}}
	byPath := map[string][]proc.Mapping{}
	var order []string
	for _, m := range maps {
		if !m.IsFile() {
			continue
		}
		if _, ok := byPath[m.Path]; !ok {
			order = append(order, m.Path)
		}
		byPath[m.Path] = append(byPath[m.Path], m)
	}
	for _, path := range order {
		ms := byPath[path]
		o, err := openObject(memPid, ms[0])
		if err != nil {
			// Fonts, locale archives and other data files are mapped
			// too; only ELF objects matter.
			p.Skipped[path] = err
			continue
		}
		em := make([]elfobj.Mapping, len(ms))
		for i, m := range ms {
			em[i] = elfobj.Mapping{Start: m.Start, End: m.End, Offset: m.Offset, Exec: m.Perms.Exec}
		}
		bias, err := o.LoadBias(em...)
		if err != nil {
			p.Skipped[path] = err
			continue
		}
		p.Objects = append(p.Objects, &Object{Path: path, File: o, Bias: bias,
			Start: ms[0].Start, End: ms[len(ms)-1].End, Main: path == exe})
	}
	p.Objects = loadOrder(p.Objects)
	if len(p.Objects) == 0 || !p.Objects[0].Main {
		return nil, fmt.Errorf("inspect pid %d: its executable %s is not among its readable mappings", pid, exe)
	}
	return p, nil
}

// loadOrder puts the executable first, then its DT_NEEDED libraries
// breadth first as the dynamic linker searches them, then the rest (the
// dynamic linker itself, dlopen'ed objects) by address.
func loadOrder(objs []*Object) []*Object {
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].Start < objs[j].Start })
	bySoname := map[string]*Object{}
	for _, o := range objs {
		if o.File.Soname != "" {
			bySoname[o.File.Soname] = o
		}
		bySoname[filepath.Base(o.Path)] = o
	}
	var out []*Object
	seen := map[*Object]bool{}
	var queue []*Object
	for _, o := range objs {
		if o.Main {
			queue = append(queue, o)
			seen[o] = true
		}
	}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		out = append(out, o)
		for _, n := range o.File.Needed {
			if d, ok := bySoname[n]; ok && !seen[d] {
				seen[d] = true
				queue = append(queue, d)
			}
		}
	}
	for _, o := range objs {
		if !seen[o] {
			out = append(out, o)
		}
	}
	return out
}

// ObjectByBuildID returns the loaded object with the build-id.
func (p *Process) ObjectByBuildID(id []byte) *Object {
	for _, o := range p.Objects {
		if len(o.File.BuildID) > 0 && bytes.Equal(o.File.BuildID, id) {
			return o
		}
	}
	return nil
}

// ObjectAt returns the object whose mappings hold addr.
func (p *Process) ObjectAt(addr uint64) *Object {
	for _, o := range p.Objects {
		if addr >= o.Start && addr < o.End {
			return o
		}
	}
	return nil
}

// describe names an address for messages: "parse_header+0x1c in /usr/bin/x".
func (p *Process) describe(addr uint64) string {
	o := p.ObjectAt(addr)
	if o == nil {
		return fmt.Sprintf("%#x", addr)
	}
	if s, ok := o.File.FuncAt(addr - o.Bias); ok {
		return fmt.Sprintf("%s+%#x in %s", s.Name, addr-o.Bias-s.Value, o.Path)
	}
	return fmt.Sprintf("%#x in %s", addr, o.Path)
}

// ErrTraced means another tracer (a debugger) holds the process.
var ErrTraced = errors.New("process is being traced by another program")

func checkNotTraced(pid int) error {
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return err
	}
	if st.TracerPid != 0 {
		return fmt.Errorf("pid %d (%s) is traced by pid %d: %w; detach the debugger and retry", pid, st.Name, st.TracerPid, ErrTraced)
	}
	return nil
}
