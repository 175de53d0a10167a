package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrPermission means the kernel refused access to another process's /proc
// files or memory.
var ErrPermission = errors.New("permission denied")

// PermissionAdvice says what would let this process read and trace pid:
// another tracer to detach (named), root or CAP_SYS_PTRACE, and the Yama
// ptrace_scope setting where the kernel has it.
func PermissionAdvice(pid int) string {
	if st, err := ReadStatus(pid); err == nil && st.TracerPid != 0 {
		name, _ := Comm(st.TracerPid)
		return fmt.Sprintf("pid %d is already traced by pid %d (%s); detach it first", pid, st.TracerPid, name)
	}
	var advice []string
	if os.Geteuid() != 0 {
		advice = append(advice, "run as root or grant CAP_SYS_PTRACE")
	} else {
		advice = append(advice, "this process runs as root; check that it has CAP_SYS_PTRACE (containers drop it) and that no security module (AppArmor, SELinux) forbids tracing")
	}
	switch scope := YamaPtraceScope(); scope {
	case 1:
		advice = append(advice, "Yama ptrace_scope is 1 (only ancestors may trace without CAP_SYS_PTRACE): use root or sysctl kernel.yama.ptrace_scope=0")
	case 2:
		advice = append(advice, "Yama ptrace_scope is 2 (only CAP_SYS_PTRACE may trace)")
	case 3:
		advice = append(advice, "Yama ptrace_scope is 3: tracing is disabled until reboot")
	}
	return strings.Join(advice, "; ")
}

// YamaPtraceScope reads kernel.yama.ptrace_scope: -1 when the kernel has no
// Yama, 0 to 3 otherwise.
func YamaPtraceScope() int {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return -1
	}
	return v
}

// accessError wraps a failed access to pid's /proc file name with the
// advice that fits the error.
func accessError(pid int, what string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: process %d is gone: %w", what, pid, ErrNoProcess)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: %w: %s", what, ErrPermission, PermissionAdvice(pid))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// StartTime is the time the process started, in clock ticks since boot
// (field 22 of /proc/PID/stat). With the pid it names one process for the
// life of the system: a pid reused later has another start time.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, accessError(pid, fmt.Sprintf("read /proc/%d/stat", pid), err)
	}
	return ParseStartTime(b)
}

// ParseStartTime returns starttime (field 22) of a /proc/PID/stat text.
func ParseStartTime(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "no command name"}
	}
	fields := strings.Fields(string(b[i+1:]))
	const startTime = 22 - 3
	if len(fields) <= startTime {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "fewer than 22 fields"}
	}
	v, err := strconv.ParseUint(fields[startTime], 10, 64)
	if err != nil {
		return 0, &FormatError{File: "stat", Line: 1, Text: string(b), Msg: "bad starttime field"}
	}
	return v, nil
}

// HolderOf describes a process for messages: "pid 42 (hotpatch)".
func HolderOf(pid int) string {
	if name, err := Comm(pid); err == nil {
		return fmt.Sprintf("pid %d (%s)", pid, name)
	}
	return fmt.Sprintf("pid %d", pid)
}

// SignalMasks are a thread's signal sets as /proc shows them, bit n-1 for
// signal n.
type SignalMasks struct {
	Blocked, Ignored, Caught uint64
}

// ThreadSignals reads the signal sets of thread tid of pid
// (SigBlk, SigIgn and SigCgt of /proc/PID/task/TID/status).
func ThreadSignals(pid, tid int) (SignalMasks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return SignalMasks{}, accessError(pid, fmt.Sprintf("read the status of thread %d of pid %d", tid, pid), err)
	}
	return ParseSignalMasks(b)
}

// ParseSignalMasks reads SigBlk, SigIgn and SigCgt from a status text.
func ParseSignalMasks(b []byte) (SignalMasks, error) {
	var m SignalMasks
	seen := 0
	for n, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "SigBlk":
			dst = &m.Blocked
		case "SigIgn":
			dst = &m.Ignored
		case "SigCgt":
			dst = &m.Caught
		default:
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return m, &FormatError{File: "status", Line: n + 1, Text: line, Msg: "bad signal set"}
		}
		*dst = v
		seen++
	}
	if seen != 3 {
		return m, &FormatError{File: "status", Msg: "no SigBlk, SigIgn and SigCgt lines"}
	}
	return m, nil
}
