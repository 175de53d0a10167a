package proc

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Range is a span of the target's address space to read.
type Range struct {
	Addr uint64
	Buf  []byte
}

// iovMax is the kernel's limit on iovecs per process_vm_readv call.
const iovMax = 1024

// ReadRanges reads every range with as few process_vm_readv calls as
// possible (one per 1024 ranges). It returns how many bytes each range got:
// a range that crosses into unmapped memory is read up to that point,
// which is what a stack read near the top of the stack needs.
func ReadRanges(pid int, ranges []Range) ([]int, error) {
	got := make([]int, len(ranges))
	for base := 0; base < len(ranges); base += iovMax {
		batch := ranges[base:min(base+iovMax, len(ranges))]
		local := make([]unix.Iovec, 0, len(batch))
		remote := make([]unix.RemoteIovec, 0, len(batch))
		for _, r := range batch {
			if len(r.Buf) == 0 {
				continue
			}
			local = append(local, unix.Iovec{Base: &r.Buf[0], Len: uint64(len(r.Buf))})
			remote = append(remote, unix.RemoteIovec{Base: uintptr(r.Addr), Len: len(r.Buf)})
		}
		n, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if err != nil && n <= 0 {
			if errors.Is(err, unix.ESRCH) {
				return got, fmt.Errorf("read memory of pid %d: process is gone: %w", pid, ErrNoProcess)
			}
			if !errors.Is(err, unix.EFAULT) {
				return got, accessError(pid, fmt.Sprintf("read memory of pid %d", pid), err)
			}
			n = 0
		}
		// The kernel stops at the first fault: distribute what it read,
		// then retry the ranges after the faulting one individually.
		i := 0
		for ; i < len(batch) && n > 0; i++ {
			c := min(n, len(batch[i].Buf))
			got[base+i] = c
			n -= c
			if c < len(batch[i].Buf) {
				i++
				break
			}
		}
		for ; i < len(batch); i++ {
			if len(batch[i].Buf) == 0 {
				continue
			}
			c, err := readOne(pid, batch[i])
			if err != nil {
				return got, err
			}
			got[base+i] = c
		}
	}
	return got, nil
}

func readOne(pid int, r Range) (int, error) {
	local := []unix.Iovec{{Base: &r.Buf[0], Len: uint64(len(r.Buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(r.Addr), Len: len(r.Buf)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		if errors.Is(err, unix.EFAULT) {
			return 0, nil
		}
		if errors.Is(err, unix.ESRCH) {
			return 0, fmt.Errorf("read memory of pid %d: process is gone: %w", pid, ErrNoProcess)
		}
		return 0, accessError(pid, fmt.Sprintf("read memory of pid %d at %#x", pid, r.Addr), err)
	}
	return n, nil
}

// ReadMem reads len(buf) bytes at addr; a short read is an error.
func ReadMem(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	got, err := ReadRanges(pid, []Range{{Addr: addr, Buf: buf}})
	if err != nil {
		return err
	}
	if got[0] != len(buf) {
		return fmt.Errorf("read %d bytes of pid %d at %#x: only %d readable", len(buf), pid, addr, got[0])
	}
	return nil
}

// Mem is /proc/PID/mem opened for writing. Writes through it reach pages
// the process itself cannot write, such as its code, and cost about 1 µs
// per 4 KiB; process_vm_writev fails on such pages and PTRACE_POKEDATA is
// hundreds of times slower.
type Mem struct {
	pid int
	f   *os.File
}

// OpenMem opens the memory of pid. The caller needs ptrace rights over it.
func OpenMem(pid int) (*Mem, error) {
	f, err := os.OpenFile(procPath(pid, "mem"), os.O_RDWR, 0)
	if err != nil {
		return nil, accessError(pid, fmt.Sprintf("open memory of pid %d", pid), err)
	}
	return &Mem{pid: pid, f: f}, nil
}

// WriteAt writes b at addr in the process.
func (m *Mem) WriteAt(b []byte, addr uint64) error {
	if int64(addr) < 0 {
		// pwrite takes a signed offset; user-space addresses on x86-64
		// and AArch64 are below 2^63.
		return fmt.Errorf("write memory of pid %d at %#x: address out of range", m.pid, addr)
	}
	for len(b) > 0 {
		n, err := unix.Pwrite(int(m.f.Fd()), b, int64(addr))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("write %d bytes to pid %d at %#x: %w", len(b), m.pid, addr, err)
		}
		if n == 0 {
			return fmt.Errorf("write %d bytes to pid %d at %#x: no progress", len(b), m.pid, addr)
		}
		b = b[n:]
		addr += uint64(n)
	}
	return nil
}

// ReadAt reads len(b) bytes at addr through /proc/PID/mem, which, unlike
// process_vm_readv, also reads pages mapped without read permission.
func (m *Mem) ReadAt(b []byte, addr uint64) error {
	for len(b) > 0 {
		n, err := unix.Pread(int(m.f.Fd()), b, int64(addr))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("read %d bytes of pid %d at %#x: %w", len(b), m.pid, addr, err)
		}
		if n == 0 {
			return fmt.Errorf("read %d bytes of pid %d at %#x: end of memory", len(b), m.pid, addr)
		}
		b = b[n:]
		addr += uint64(n)
	}
	return nil
}

// Close closes the file.
func (m *Mem) Close() error { return m.f.Close() }
