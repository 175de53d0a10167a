package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrUnreadable means the unwinder needed a word of memory that it could
// not read: outside the stack snapshot, with no fallback or a failing one.
var ErrUnreadable = errors.New("memory is not readable")

// Memory gives the unwinder the target's memory, one stack word at a
// time. Implementations should not allocate: Word runs for every saved
// register of every frame while the target is stopped.
type Memory interface {
	Word(addr uint64) (uint64, error)
}

// Snapshot serves words from a copy of part of the target's memory (a
// thread's stack, read in bulk), and anything else from Fallback.
type Snapshot struct {
	// Addr is the target address of Data[0].
	Addr uint64
	Data []byte
	// Fallback serves reads outside Data; nil makes them fail with
	// ErrUnreadable.
	Fallback Memory
}

// Word implements Memory.
func (s *Snapshot) Word(addr uint64) (uint64, error) {
	if off := addr - s.Addr; addr >= s.Addr && off < uint64(len(s.Data)) && uint64(len(s.Data))-off >= 8 {
		return binary.LittleEndian.Uint64(s.Data[off:]), nil
	}
	if s.Fallback != nil {
		return s.Fallback.Word(addr)
	}
	return 0, ErrUnreadable
}

// Contains reports whether addr lies inside the snapshot.
func (s *Snapshot) Contains(addr uint64) bool {
	return addr >= s.Addr && addr-s.Addr < uint64(len(s.Data))
}

// ProcessMemory reads a process's memory through /proc/PID/mem. It is the
// fallback for words outside a snapshot (code bytes of a signal
// trampoline, a stack deeper than the snapshot). The caller must be
// allowed to trace the process; it need not be the tracer.
type ProcessMemory struct {
	pid int
	f   *os.File
	buf [8]byte
}

// OpenProcessMemory opens the memory of process pid.
func OpenProcessMemory(pid int) (*ProcessMemory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, fmt.Errorf("open memory of pid %d: %w", pid, err)
	}
	return &ProcessMemory{pid: pid, f: f}, nil
}

// Word implements Memory. It is not safe for concurrent use.
func (m *ProcessMemory) Word(addr uint64) (uint64, error) {
	if addr > 1<<63-8 {
		return 0, ErrUnreadable
	}
	n, err := unix.Pread(int(m.f.Fd()), m.buf[:], int64(addr))
	if err != nil || n != len(m.buf) {
		return 0, ErrUnreadable
	}
	return binary.LittleEndian.Uint64(m.buf[:]), nil
}

// Close releases the file.
func (m *ProcessMemory) Close() error { return m.f.Close() }
