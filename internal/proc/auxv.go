package proc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Auxiliary vector keys the daemon reads (elf.h).
const (
	// AtEntry is the program's entry point, after relocation.
	AtEntry = 9
)

// Auxv reads the auxiliary vector the kernel gave the program of pid at
// exec (native word size and byte order).
func Auxv(pid int) (map[uint64]uint64, error) {
	b, err := readProcFile(pid, "auxv")
	if err != nil {
		return nil, err
	}
	return ParseAuxv(b)
}

// ParseAuxv decodes a 64-bit little-endian auxiliary vector.
func ParseAuxv(b []byte) (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	for off := 0; off+16 <= len(b); off += 16 {
		k, v := binary.LittleEndian.Uint64(b[off:]), binary.LittleEndian.Uint64(b[off+8:])
		if k == 0 {
			return out, nil
		}
		out[k] = v
	}
	return nil, fmt.Errorf("auxiliary vector of %d bytes has no terminating AT_NULL", len(b))
}

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
