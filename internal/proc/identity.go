package proc

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
)

// Identity tells a process from a later one that reuses its pid: the
// parent and the start time in clock ticks since boot (/proc/PID/stat
// fields 4 and 22).
type Identity struct {
	PPid      int
	StartTime uint64
}

// ReadIdentity reads the identity of pid.
func ReadIdentity(pid int) (Identity, error) {
	b, err := readProcFile(pid, "stat")
	if err != nil {
		return Identity{}, err
	}
	return ParseIdentity(b)
}

// ParseIdentity parses the parent and start time of a /proc/PID/stat text.
func ParseIdentity(b []byte) (Identity, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Identity{}, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "no command name"}
	}
	fields := strings.Fields(string(b[i+1:]))
	const ppid, start = 4 - 3, 22 - 3
	if len(fields) <= start {
		return Identity{}, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "fewer than 22 fields"}
	}
	pp, err1 := strconv.Atoi(fields[ppid])
	st, err2 := strconv.ParseUint(fields[start], 10, 64)
	if err1 != nil || err2 != nil {
		return Identity{}, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "bad ppid or starttime field"}
	}
	return Identity{PPid: pp, StartTime: st}, nil
}

// Children lists the children of every thread of pid
// (/proc/PID/task/TID/children). A child created or reaped during the
// read may be missed; callers that scan periodically see it next time.
// The error wraps os.ErrNotExist when the kernel has no children files
// (CONFIG_PROC_CHILDREN off).
func Children(pid int) ([]int, error) {
	d, err := os.Open(procPath(pid, "task"))
	if err != nil {
		return nil, &os.PathError{Op: "list children", Path: procPath(pid, "task"), Err: ErrNoProcess}
	}
	tids, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, &os.PathError{Op: "list children", Path: procPath(pid, "task"), Err: ErrNoProcess}
	}
	var out []int
	for _, tid := range tids {
		b, err := os.ReadFile(procPath(pid, "task/"+tid+"/children"))
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(procPath(pid, "task/"+tid)); serr == nil {
				return nil, &os.PathError{Op: "list children", Path: procPath(pid, "task/"+tid+"/children"), Err: os.ErrNotExist}
			}
			continue
		}
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out, nil
}
