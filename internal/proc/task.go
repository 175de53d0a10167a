package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Threads lists the thread ids of a process, in ascending order.
func Threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(procPath(pid, "task"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("list threads of pid %d: process is gone: %w", pid, ErrNoProcess)
		}
		return nil, fmt.Errorf("list threads of pid %d: %w", pid, err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

// Status holds the fields of /proc/PID/status that hotpatch uses.
type Status struct {
	Name      string
	State     string
	Tgid      int
	Pid       int
	PPid      int
	TracerPid int
	Threads   int
}

// ParseStatus parses the text of /proc/PID/status.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	for n, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		num := func(dst *int) error {
			v, err := strconv.Atoi(val)
			if err != nil {
				return &FormatError{File: "status", Line: n + 1, Text: line, Msg: "bad number"}
			}
			*dst = v
			return nil
		}
		var err error
		switch key {
		case "Name":
			s.Name = val
		case "State":
			s.State = val
		case "Tgid":
			err = num(&s.Tgid)
		case "Pid":
			err = num(&s.Pid)
		case "PPid":
			err = num(&s.PPid)
		case "TracerPid":
			err = num(&s.TracerPid)
		case "Threads":
			err = num(&s.Threads)
		}
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	b, err := readProcFile(pid, "status")
	if err != nil {
		return Status{}, err
	}
	s, err := ParseStatus(b)
	if err != nil {
		return s, fmt.Errorf("parse status of pid %d: %w", pid, err)
	}
	return s, nil
}

// Exe returns the path of the process's executable as the kernel names it.
func Exe(pid int) (string, error) {
	p, err := os.Readlink(procPath(pid, "exe"))
	if err != nil {
		return "", accessError(pid, fmt.Sprintf("read executable of pid %d", pid), err)
	}
	return strings.TrimSuffix(p, " (deleted)"), nil
}

// Comm returns the process's command name.
func Comm(pid int) (string, error) {
	b, err := readProcFile(pid, "comm")
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// Processes lists the ids of all processes in ascending order.
func Processes() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// MappedFile returns a path through which the file behind a mapping can be
// opened even when it was deleted or lives in another mount namespace:
// /proc/PID/map_files/START-END. It needs CAP_SYS_ADMIN or, since Linux
// 4.3, the same rights as ptrace; the caller falls back to the path.
func MappedFile(pid int, m Mapping) string {
	return fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End)
}

// LiveThread returns a thread of the process that has not exited: the
// main thread, or, when it called pthread_exit and is a zombie while the
// others run on, another one. The memory, maps and executable of the
// process are reachable only through a live thread.
func LiveThread(pid int) (int, error) {
	if state, err := threadState(pid, pid); err == nil && state != 'Z' && state != 'X' {
		return pid, nil
	}
	tids, err := Threads(pid)
	if err != nil {
		return 0, err
	}
	for _, tid := range tids {
		if state, err := threadState(pid, tid); err == nil && state != 'Z' && state != 'X' {
			return tid, nil
		}
	}
	return 0, fmt.Errorf("pid %d has no live thread: %w", pid, ErrNoProcess)
}

// ThreadState returns the state letter of a thread ('R', 'S', 't', 'Z'...).
func ThreadState(pid, tid int) (byte, error) { return threadState(pid, tid) }

func threadState(pid, tid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("read state of thread %d of pid %d: %w", tid, pid, ErrNoProcess)
		}
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "no state after the command name"}
	}
	return b[i+2], nil
}

// LastCPU returns the CPU a thread last ran on (field 39 of its stat).
func LastCPU(pid, tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("read stat of thread %d of pid %d: %w", tid, pid, ErrNoProcess)
		}
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "no command name"}
	}
	// Fields after the command name start with the state, field 3.
	fields := strings.Fields(string(b[i+1:]))
	const processor = 39 - 3
	if len(fields) <= processor {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "fewer than 39 fields"}
	}
	cpu, err := strconv.Atoi(fields[processor])
	if err != nil {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "bad processor field"}
	}
	return cpu, nil
}

// ParseStatThreads returns num_threads (field 20) of a /proc/PID/stat text.
func ParseStatThreads(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "no command name"}
	}
	fields := strings.Fields(string(b[i+1:]))
	const numThreads = 20 - 3
	if len(fields) <= numThreads {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "fewer than 20 fields"}
	}
	n, err := strconv.Atoi(fields[numThreads])
	if err != nil {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "bad num_threads field"}
	}
	return n, nil
}
