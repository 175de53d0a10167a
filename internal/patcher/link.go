package patcher

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

var pageSize = uint64(os.Getpagesize())

func alignUp(v, a uint64) uint64 {
	if a <= 1 {
		return v
	}
	return (v + a - 1) &^ (a - 1)
}

// linked is a patch relocated for one address in one process.
type linked struct {
	patch  *patchfile.Patch
	target *Object
	base   uint64
	size   uint64
	// image is the whole region as it must appear in the target; the
	// header part is filled in last.
	image      []byte
	headerSize uint64
	parts      []regionPart
	secAddr    []uint64
	textStart  uint64
	textEnd    uint64
	ehAddr     uint64
	ehSize     uint64
	// trapAddr holds traps that injected calls return to; frameObj is
	// the storage for registering the call frame information.
	trapAddr uint64
	frameObj uint64
	funcs    []regionFunc
	// ifuncFixups are the places that must hold what the resolver of a
	// new ifunc of the patch returns; it can run only once the region
	// is mapped (resolvePatchIFuncs).
	ifuncFixups []ifuncFixup
}

// ifuncFixup is a place filled with a new ifunc's implementation: a
// far-jump stub that calls of the ifunc go through, or an address word.
type ifuncFixup struct {
	name     string
	resolver uint64
	place    uint64
	addend   int64
	stub     bool
}

// isPatchIFunc reports whether s is a new ifunc of the patch: its value
// is its resolver, in the patch's own code.
func isPatchIFunc(s *patchfile.Symbol) bool {
	return s.Kind.InPatch() && s.Type == elf.STT_GNU_IFUNC
}

// partOf says which part of the region a section goes to.
func partOf(s *patchfile.Section) int {
	switch s.Kind {
	case patchfile.SectionText:
		return 1
	case patchfile.SectionROData:
		return 2
	}
	return 3
}

var partNames = []string{"header", "text", "rodata", "data"}
var partProts = []string{"r--", "r-x", "r--", "rw-"}

// layout places the sections in the four parts of the region and returns
// the offsets of sections and far-jump stubs relative to the region base.
// frameObjectSize is room for libgcc's struct object, which
// __register_frame_info fills in: the patch provides it so that the
// registration does not call malloc in a stopped thread.
const frameObjectSize = 128

// layout also reserves, in the text part, a trap that calls injected into
// the target return to, and, when the patch has call frame information, a
// frame object in the data part.
func layout(p *patchfile.Patch, a *arch.Arch, stubSyms []uint32) (secOff []uint64, stubOff map[uint32]uint64, parts []regionPart, headerSize, trapOff, frameObjOff uint64) {
	// The header records names, saved bytes and addresses of every
	// function; bound it generously so the rest can be laid out first.
	hb := uint64(4096 + len(p.ID) + len(p.Target))
	for _, f := range p.Funcs {
		hb += uint64(2*len(f.Name)) + 512
	}
	headerSize = alignUp(hb, pageSize)
	secOff = make([]uint64, len(p.Sections))
	stubOff = map[uint32]uint64{}
	off := headerSize
	parts = []regionPart{{Name: "header", Off: 0, Size: headerSize, Prot: "r--"}}
	for part := 1; part <= 3; part++ {
		start := off
		for i := range p.Sections {
			s := &p.Sections[i]
			if partOf(s) != part {
				continue
			}
			off = alignUp(off, max(s.Align, 1))
			secOff[i] = off
			off += s.Size
		}
		if part == 1 {
			off = alignUp(off, 16)
			for _, si := range stubSyms {
				stubOff[si] = off
				off += uint64(a.FarJumpSize)
			}
			trapOff = off
			off += 16
		}
		if part == 3 && hasEHFrame(p) {
			off = alignUp(off, 16)
			frameObjOff = off
			off += frameObjectSize
		}
		off = alignUp(off, pageSize)
		if off > start {
			parts = append(parts, regionPart{Name: partNames[part], Off: start, Size: off - start, Prot: partProts[part]})
		}
	}
	return secOff, stubOff, parts, headerSize, trapOff, frameObjOff
}

func hasEHFrame(p *patchfile.Patch) bool {
	for i := range p.Sections {
		if strings.HasSuffix(p.Sections[i].Name, "eh_frame") && p.Sections[i].Size > 0 {
			return true
		}
	}
	return false
}

// callStubCandidates lists external symbols reached by call relocations:
// each may need a far-jump stub if it lands out of reach.
func callStubCandidates(p *patchfile.Patch, a *arch.Arch) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, r := range p.Relocs {
		rt, ok := a.Relocs[r.Type]
		if !ok || !rt.IsCall || int(r.Symbol) >= len(p.Symbols) {
			continue
		}
		if (p.Symbols[r.Symbol].Kind == patchfile.SymExternal || isPatchIFunc(&p.Symbols[r.Symbol])) && !seen[r.Symbol] {
			seen[r.Symbol] = true
			out = append(out, r.Symbol)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// needsLowRegion reports whether the patch uses absolute 32-bit references
// to its own symbols, which only a region below 2 GiB satisfies (non-PIE
// code built with the default small code model).
func needsLowRegion(p *patchfile.Patch) bool {
	for _, r := range p.Relocs {
		if (r.Type == uint32(elf.R_X86_64_32) || r.Type == uint32(elf.R_X86_64_32S)) && int(r.Symbol) < len(p.Symbols) && p.Symbols[r.Symbol].Kind.InPatch() {
			return true
		}
	}
	return false
}

func mmapMinAddr() uint64 {
	b, err := os.ReadFile("/proc/sys/vm/mmap_min_addr")
	if err != nil {
		return 1 << 16
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 1 << 16
	}
	return max(alignUp(v, pageSize), 1<<16)
}

// ErrNoRoom means no free address range within reach of the target object
// can hold the region.
var ErrNoRoom = errors.New("no free address range within ±2 GiB of the object")

// chooseBase picks a free, page-aligned range of size bytes from which the
// region reaches all of obj with 32-bit displacements, keeping one free
// page on either side. Below the object is preferred: above an
// executable lies its heap, which grows with brk.
func chooseBase(maps []proc.Mapping, obj *Object, size uint64, below2G bool, taken [][2]uint64) (uint64, error) {
	const reach = 1<<31 - 1<<20 // a little margin for the jump's own length
	guard := pageSize
	winLo := uint64(0)
	if obj.End > reach {
		winLo = obj.End - reach
	}
	winLo = max(winLo, mmapMinAddr())
	winHi := obj.Start + reach
	if below2G {
		winHi = min(winHi, 1<<31)
	}
	type span struct{ lo, hi uint64 }
	var used []span
	for _, m := range maps {
		used = append(used, span{m.Start, m.End})
	}
	for _, t := range taken {
		used = append(used, span{t[0], t[1]})
	}
	sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
	var best uint64
	bestDist := ^uint64(0)
	consider := func(base uint64) {
		if base < winLo || base+size > winHi || base%pageSize != 0 {
			return
		}
		var d uint64
		if base+size <= obj.Start {
			d = obj.Start - (base + size)
		} else if base >= obj.End {
			d = base - obj.End + 1<<32 // above: only when nothing below fits
		} else {
			return
		}
		if d < bestDist {
			best, bestDist = base, d
		}
	}
	prevEnd := uint64(0)
	for i := 0; i <= len(used); i++ {
		gapLo, gapHi := prevEnd, uint64(1<<47)
		if i < len(used) {
			gapHi = used[i].lo
		}
		if gapHi > gapLo+size+2*guard {
			// Highest and lowest placement in the gap, clipped to the
			// window.
			top := (gapHi - guard - size) &^ (pageSize - 1)
			if top+size > winHi && winHi > size {
				top = (winHi - size) &^ (pageSize - 1)
			}
			if top >= gapLo+guard {
				consider(top)
			}
			bottom := alignUp(max(gapLo+guard, winLo), pageSize)
			if bottom+size+guard <= gapHi {
				consider(bottom)
			}
		}
		if i < len(used) {
			prevEnd = max(prevEnd, used[i].hi)
		}
	}
	if bestDist == ^uint64(0) {
		return 0, fmt.Errorf("place %d bytes near %s (%#x-%#x): %w", size, obj.Path, obj.Start, obj.End, ErrNoRoom)
	}
	return best, nil
}

// link relocates p for the process at base.
func (r *resolver) link(p *patchfile.Patch, a *arch.Arch, secOff []uint64, stubOff map[uint32]uint64, parts []regionPart, headerSize, trapOff, frameObjOff, base uint64) (*linked, error) {
	size := parts[len(parts)-1].Off + parts[len(parts)-1].Size
	l := &linked{patch: p, target: r.target, base: base, size: size, image: make([]byte, size),
		headerSize: headerSize, parts: parts, secAddr: make([]uint64, len(p.Sections)), trapAddr: base + trapOff}
	for i := uint64(0); i < 16; i += uint64(len(a.Trap)) {
		copy(l.image[trapOff+i:], a.Trap)
	}
	if frameObjOff != 0 {
		l.frameObj = base + frameObjOff
	}
	l.textStart, l.textEnd = ^uint64(0), 0
	for i := range p.Sections {
		s := &p.Sections[i]
		l.secAddr[i] = base + secOff[i]
		if !s.NoBits {
			copy(l.image[secOff[i]:], s.Data)
		}
		if s.Kind == patchfile.SectionText {
			l.textStart = min(l.textStart, l.secAddr[i])
			l.textEnd = max(l.textEnd, l.secAddr[i]+s.Size)
		}
		if strings.HasSuffix(s.Name, "eh_frame") {
			l.ehAddr, l.ehSize = l.secAddr[i], s.Size
		}
	}
	for _, off := range stubOff {
		l.textStart = min(l.textStart, base+off)
		l.textEnd = max(l.textEnd, base+off+uint64(a.FarJumpSize))
	}
	if l.textEnd == 0 {
		l.textStart = 0
	}
	addrs := make([]uint64, len(p.Symbols))
	known := make([]bool, len(p.Symbols))
	symAddr := func(i uint32) (uint64, error) {
		if int(i) >= len(p.Symbols) {
			return 0, fmt.Errorf("symbol index %d out of range", i)
		}
		if known[i] {
			return addrs[i], nil
		}
		s := &p.Symbols[i]
		var v uint64
		switch s.Kind {
		case patchfile.SymNew, patchfile.SymPatch:
			if int(s.Section) >= len(p.Sections) {
				return 0, fmt.Errorf("symbol %s: section %d out of range", s.Name, s.Section)
			}
			v = l.secAddr[s.Section] + s.Value
		case patchfile.SymTarget:
			v = r.target.Bias + s.Value
			if r.targetIFunc(s) {
				// The value of an ifunc is its resolver: calls must go
				// to the implementation the resolver chose.
				var err error
				if v, err = r.ifunc(s, r.target, v); err != nil {
					return 0, err
				}
			}
		case patchfile.SymExternal:
			var err error
			if v, err = r.address(s); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("symbol %s is thread-local (%v) but used as an address", s.Name, s.Kind)
		}
		addrs[i], known[i] = v, true
		return v, nil
	}
	for _, rel := range p.Relocs {
		if err := r.applyReloc(l, a, rel, symAddr, stubOff); err != nil {
			return nil, fmt.Errorf("patch %s for %s: %w", p.ID, r.target.Path, err)
		}
	}
	for _, f := range p.Funcs {
		nv, err := symAddr(f.NewSymbol)
		if err != nil {
			return nil, fmt.Errorf("patch %s: function %s: %w", p.ID, f.Name, err)
		}
		l.funcs = append(l.funcs, regionFunc{Name: f.Name, Old: r.target.Bias + f.OldOffset, OldSize: f.OldSize,
			New: nv, NewSize: f.NewSize, RangeOnly: f.Flags&patchfile.FuncRangeOnly != 0})
	}
	return l, nil
}

func (r *resolver) applyReloc(l *linked, a *arch.Arch, rel patchfile.Reloc, symAddr func(uint32) (uint64, error), stubOff map[uint32]uint64) error {
	p := l.patch
	rt, err := a.Reloc(rel.Type)
	if err != nil {
		return err
	}
	if int(rel.Section) >= len(p.Sections) || int(rel.Symbol) >= len(p.Symbols) {
		return fmt.Errorf("relocation at section %d offset %#x: index out of range", rel.Section, rel.Offset)
	}
	sec := &p.Sections[rel.Section]
	sym := &p.Symbols[rel.Symbol]
	if sec.NoBits || rel.Offset+uint64(rt.Size) > sec.Size {
		return fmt.Errorf("%s against %s at %s+%#x lies outside the section's contents", rt.Name, sym.Name, sec.Name, rel.Offset)
	}
	place := l.secAddr[rel.Section] + rel.Offset
	field := l.image[place-l.base : place-l.base+uint64(rt.Size)]
	var s uint64
	switch rt.Class {
	case arch.ClassAddress:
		if s, err = symAddr(rel.Symbol); err != nil {
			return fmt.Errorf("%s at %s+%#x: %w", rt.Name, sec.Name, rel.Offset, err)
		}
		ifunc := isPatchIFunc(sym)
		if rt.IsCall && rt.Size == 4 && (ifunc || !fitsInt32(s+uint64(rel.Addend)-place)) {
			off, ok := stubOff[rel.Symbol]
			if !ok {
				return fmt.Errorf("call to %s at %s+%#x is out of reach and has no stub", sym.Name, sec.Name, rel.Offset)
			}
			copy(l.image[off:], a.EncodeFarJump(s))
			if ifunc {
				// Calls of a new ifunc go through its stub, which gets
				// the implementation once the resolver ran.
				l.ifuncFixups = append(l.ifuncFixups, ifuncFixup{name: sym.Name, resolver: s, place: l.base + off, stub: true})
			}
			s = l.base + off
		} else if ifunc {
			if rt.Size != a.PtrSize || rt.PCRel {
				return fmt.Errorf("new ifunc %s is referenced by %s at %s+%#x: only calls and address words (a GOT slot) can reach a new ifunc; "+
					"take its address through a pointer variable or build the patch with -fPIC", sym.Name, rt.Name, sec.Name, rel.Offset)
			}
			l.ifuncFixups = append(l.ifuncFixups, ifuncFixup{name: sym.Name, resolver: s, place: place, addend: rel.Addend})
		}
	case arch.ClassTPOff:
		o, off, err := r.tlsObject(sym)
		if err != nil {
			return fmt.Errorf("%s at %s+%#x: %w", rt.Name, sec.Name, rel.Offset, err)
		}
		if s, err = r.tpoff(o, off, sym.Name); err != nil {
			return err
		}
	case arch.ClassDTPMod:
		o, _, err := r.tlsObject(sym)
		if err != nil {
			return fmt.Errorf("%s at %s+%#x: %w", rt.Name, sec.Name, rel.Offset, err)
		}
		if s, err = r.moduleID(o, sym.Name); err != nil {
			return err
		}
	case arch.ClassDTPOff:
		_, off, err := r.tlsObject(sym)
		if err != nil {
			return fmt.Errorf("%s at %s+%#x: %w", rt.Name, sec.Name, rel.Offset, err)
		}
		s = off
	}
	if err := rt.Apply(field, s, rel.Addend, place); err != nil {
		if errors.Is(err, arch.ErrRelocOverflow) {
			return fmt.Errorf("reference to %s at %s+%#x is out of reach of the patch region (%s at %#x): %w; "+
				"data of other objects must be reached through a GOT slot of the patch", sym.Name, sec.Name, rel.Offset, rt.Name, s, err)
		}
		return fmt.Errorf("%s against %s at %s+%#x: %w", rt.Name, sym.Name, sec.Name, rel.Offset, err)
	}
	return nil
}

func fitsInt32(v uint64) bool { return int64(v) == int64(int32(v)) }
