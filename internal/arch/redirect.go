package arch

import (
	"errors"
	"fmt"
)

// A function shorter than the redirecting jump cannot hold it at its
// entry. Two things can make room: padding right after the function
// (alignment the compiler or linker put between functions), which the
// jump may overwrite; or a short jump at the entry to a trampoline, a
// full jump written into padding nearby.

// Room is the code around a function too short for the jump.
type Room struct {
	// Bytes are loaded at Addr; they cover the function and the reach of
	// the short jump on both sides.
	Addr  uint64
	Bytes []byte
	// Free reports whether the byte at addr belongs to no function.
	// Only such bytes may be padding: nops inside a function align a
	// loop head, and run.
	Free func(addr uint64) bool
	// Taken reports whether [lo, hi) is already promised to another
	// trampoline.
	Taken func(lo, hi uint64) bool
}

// Redirect is how a function's entry reaches the jump to its
// replacement.
type Redirect struct {
	// Site is where the jump is written: the entry itself, or a
	// trampoline in padding.
	Site uint64
	// Entry is the short jump to Site written over the entry, or nil
	// when Site is the entry.
	Entry []byte
}

// ErrNoRoom means neither padding after a short function nor a
// trampoline within short-jump reach can take the jump.
var ErrNoRoom = errors.New("no room for the jump")

func (r Room) at(addr uint64, n int) ([]byte, bool) {
	if addr < r.Addr || addr+uint64(n) > r.Addr+uint64(len(r.Bytes)) {
		return nil, false
	}
	return r.Bytes[addr-r.Addr : addr-r.Addr+uint64(n)], true
}

func (r Room) free(lo, hi uint64) bool {
	for a := lo; a < hi; a++ {
		if !r.Free(a) {
			return false
		}
	}
	return true
}

// ShortWindow is the range of addresses around a function at entry that
// PlanRedirect may look at.
func (a *Arch) ShortWindow(entry, size uint64) (lo, hi uint64) {
	lo = entry + uint64(a.ShortJumpSize) - uint64(-a.ShortJumpMin)
	hi = entry + uint64(a.ShortJumpSize) + uint64(a.ShortJumpMax) + uint64(a.JumpSize)
	return min(lo, entry), max(hi, entry+size+uint64(a.JumpSize)+32)
}

// PlanRedirect decides where the jump for the function of size bytes at
// entry goes.
func (a *Arch) PlanRedirect(entry, size uint64, room Room) (Redirect, error) {
	if size >= uint64(a.JumpSize) {
		return Redirect{Site: entry}, nil
	}
	end := entry + size
	if after, ok := room.at(end, len(room.Bytes)-int(end-room.Addr)); ok && room.free(end, entry+uint64(a.JumpSize)) &&
		a.PaddingLen(after) >= a.JumpSize-int(size) && (room.Taken == nil || !room.Taken(end, entry+uint64(a.JumpSize))) {
		return Redirect{Site: entry}, nil
	}
	if a.ShortJumpSize == 0 || size < uint64(a.ShortJumpSize) {
		return Redirect{}, fmt.Errorf("%d bytes, shorter than the %d-byte jump and the %d-byte short jump, and no padding follows: %w", size, a.JumpSize, a.ShortJumpSize, ErrNoRoom)
	}
	code, ok := room.at(entry, int(size))
	if !ok {
		return Redirect{}, fmt.Errorf("the function's code is not in the window: %w", ErrNoRoom)
	}
	for k := 1; k < a.ShortJumpSize; k++ {
		if a.BranchesTo(code, entry, entry+uint64(k)) {
			return Redirect{}, fmt.Errorf("a branch inside it lands in the %d bytes a short jump would overwrite: %w", a.ShortJumpSize, ErrNoRoom)
		}
	}
	from := entry + uint64(a.ShortJumpSize)
	best, bestDist := uint64(0), int64(-1)
	lo, hi := room.Addr, room.Addr+uint64(len(room.Bytes))
	for p := lo; p < hi; {
		if !room.Free(p) {
			p++
			continue
		}
		run := p
		for p < hi && room.Free(p) {
			p++
		}
		// Padding right after a call is the return address of a call
		// that never returns (abort); leave it alone.
		if run > lo && a.CallBefore(room.Bytes[:run-lo]) {
			continue
		}
		n := uint64(a.PaddingLen(room.Bytes[run-lo : p-lo]))
		for s := run; s+uint64(a.JumpSize) <= run+n; s++ {
			d := int64(s - from)
			if d < a.ShortJumpMin || d > a.ShortJumpMax || room.Taken != nil && room.Taken(s, s+uint64(a.JumpSize)) {
				continue
			}
			if dist := max(d, -d); bestDist < 0 || dist < bestDist {
				best, bestDist = s, dist
			}
		}
	}
	if bestDist < 0 {
		return Redirect{}, fmt.Errorf("%d bytes, shorter than the %d-byte jump, no padding follows it, and no padding of %d bytes lies within short-jump reach (%d to %+d bytes): %w",
			size, a.JumpSize, a.JumpSize, a.ShortJumpMin, a.ShortJumpMax, ErrNoRoom)
	}
	return Redirect{Site: best, Entry: a.encodeShort(entry, best)}, nil
}

// EncodeShortJump returns the short jump at from to to, or false when to
// is out of its reach.
func (a *Arch) EncodeShortJump(from, to uint64) ([]byte, bool) {
	if a.ShortJumpSize == 0 {
		return nil, false
	}
	d := int64(to - (from + uint64(a.ShortJumpSize)))
	if d < a.ShortJumpMin || d > a.ShortJumpMax {
		return nil, false
	}
	return a.encodeShort(from, to), true
}
