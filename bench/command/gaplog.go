package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probe's log, as testdata/probe.c writes it: magic, thread count and
// ring capacity, then per thread a record count and a ring of {start, end}
// pairs in CLOCK_MONOTONIC nanoseconds.
const (
	probeMagic = 0x65626f7270706875
	headerLen  = 3
)

type gapLog struct {
	words   []uint64
	mapping []byte
	threads int
	cap     int
}

func openLog(path string) (*gapLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the probe's log %s: %w", path, err)
	}
	l, err := newLog(unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8))
	if err != nil {
		_ = unix.Munmap(b)
		return nil, fmt.Errorf("probe's log %s: %w", path, err)
	}
	l.mapping = b
	return l, nil
}

// newLog checks the header of a log held in words.
func newLog(words []uint64) (*gapLog, error) {
	if len(words) < headerLen || words[0] != probeMagic {
		return nil, fmt.Errorf("no probe header")
	}
	l := &gapLog{words: words, threads: int(words[1]), cap: int(words[2])}
	if l.cap <= 0 || len(words) < headerLen+l.threads*(1+2*l.cap) {
		return nil, fmt.Errorf("%d threads with rings of %d do not fit in %d words", l.threads, l.cap, len(words))
	}
	return l, nil
}

func (l *gapLog) close() {
	if l.mapping != nil {
		_ = unix.Munmap(l.mapping)
	}
}

// maxGaps returns, per thread, the longest gap in µs that overlaps the
// window [from, to] (0 when the thread logged none there). A gap that
// began before the window counts whole: the thread did not run during it.
// Only the newest ring's worth of records is seen; the bench reads often
// enough that older ones are outside any window it asks about.
func (l *gapLog) maxGaps(from, to int64) []float64 {
	out := make([]float64, l.threads)
	for t := 0; t < l.threads; t++ {
		base := headerLen + t*(1+2*l.cap)
		n := atomic.LoadUint64(&l.words[base])
		first := uint64(0)
		if n > uint64(l.cap) {
			first = n - uint64(l.cap)
		}
		for i := first; i < n; i++ {
			slot := base + 1 + 2*int(i%uint64(l.cap))
			start, end := int64(l.words[slot]), int64(l.words[slot+1])
			if end < from || start > to || end < start {
				continue
			}
			out[t] = max(out[t], float64(end-start)/1e3)
		}
	}
	return out
}

// encodeLog writes a log in the probe's layout, for tests.
func encodeLog(cap int, threads [][][2]int64) []uint64 {
	w := make([]uint64, headerLen+len(threads)*(1+2*cap))
	w[0], w[1], w[2] = probeMagic, uint64(len(threads)), uint64(cap)
	for t, gaps := range threads {
		base := headerLen + t*(1+2*cap)
		for i, g := range gaps {
			slot := base + 1 + 2*(i%cap)
			w[slot], w[slot+1] = uint64(g[0]), uint64(g[1])
		}
		w[base] = uint64(len(gaps))
	}
	return w
}
