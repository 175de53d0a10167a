package unwind

import (
	"encoding/binary"
	"sort"
)

// CodeRange is code the patcher cares about, such as a function about to
// be replaced: [Start, End), with an ID the caller chooses (an index into
// its own list) to name it in messages.
type CodeRange struct {
	Start, End uint64
	ID         int
}

// Ranges is a set of code ranges sorted for lookup.
type Ranges struct {
	r []CodeRange
	// maxEnd[i] is the largest End among r[0..i], so that a lookup can
	// stop looking back early even when ranges nest.
	maxEnd []uint64
}

// NewRanges sorts a copy of rs.
func NewRanges(rs []CodeRange) *Ranges {
	r := &Ranges{r: append([]CodeRange(nil), rs...)}
	sort.Slice(r.r, func(i, j int) bool { return r.r[i].Start < r.r[j].Start })
	r.maxEnd = make([]uint64, len(r.r))
	var m uint64
	for i, c := range r.r {
		m = max(m, c.End)
		r.maxEnd[i] = m
	}
	return r
}

// ContainingReturn returns a range that v, taken as a return address, may
// belong to: Start <= v <= End. A word equal to End is kept because a
// call may be the last instruction of a function; one equal to Start is
// kept because the scan is conservative.
func (r *Ranges) ContainingReturn(v uint64) (CodeRange, bool) {
	i := sort.Search(len(r.r), func(i int) bool { return r.r[i].Start > v }) - 1
	for ; i >= 0 && r.maxEnd[i] >= v; i-- {
		if c := r.r[i]; v >= c.Start && v <= c.End {
			return c, true
		}
	}
	return CodeRange{}, false
}

// Hit is a stack word that points into one of the ranges.
type Hit struct {
	// Addr is where the word is on the stack.
	Addr  uint64
	Value uint64
	Range CodeRange
}

// Scan is the conservative check for when unwinding failed: it reads
// every aligned word of the snapshot from sp up to the snapshot's end and
// appends to hits each one that falls inside a range. A word that merely
// looks like a return address also counts, so a hit means "maybe", and
// no hit over the whole stack means "certainly not on this stack".
func Scan(snap *Snapshot, sp uint64, ranges *Ranges, hits []Hit) []Hit {
	if len(ranges.r) == 0 {
		return hits
	}
	start := sp
	if start < snap.Addr {
		start = snap.Addr
	}
	// Return addresses are stored 8-byte aligned by every x86-64 and
	// AArch64 call.
	start = (start + 7) &^ 7
	lo, hi := ranges.r[0].Start, ranges.maxEnd[len(ranges.maxEnd)-1]
	data := snap.Data
	for addr := start; addr >= snap.Addr && addr-snap.Addr+8 <= uint64(len(data)); addr += 8 {
		v := binary.LittleEndian.Uint64(data[addr-snap.Addr:])
		if v < lo || v > hi {
			continue
		}
		if c, ok := ranges.ContainingReturn(v); ok {
			hits = append(hits, Hit{Addr: addr, Value: v, Range: c})
		}
	}
	return hits
}
