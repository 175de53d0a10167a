package proc

import (
	"encoding/binary"
	"fmt"
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
