package ptrace

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// signalPending reports whether the thread has an unblocked signal waiting
// for it. A system call that failed with EINTR because of such a signal
// must keep its EINTR: the program may wait for exactly that.
func signalPending(pid, tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return true
	}
	var pnd, shd, blk uint64
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			continue
		}
		switch key {
		case "SigPnd":
			pnd = v
		case "ShdPnd":
			shd = v
		case "SigBlk":
			blk = v
		}
	}
	return (pnd|shd)&^blk != 0
}
