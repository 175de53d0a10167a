package extract

import (
	"debug/elf"
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// gotSection holds the slots extraction adds (docs/augmented-assembly.md
// §4, "References that leave the target object").
const gotSection = ".hotpatch.got"

// farRef is a relocation of patch code against a symbol of another
// object that the instruction reaches directly (a 32-bit field): the
// compiler could not know the symbol would be out of reach of the patch.
type farRef struct {
	pfSec  int    // section index in the patched link
	pidx   uint32 // patch section
	off    uint64 // of the field, in the section
	typ    uint32
	sym    uint32 // patch symbol
	addend int64
}

// needsSlot reports whether a relocation of type typ in patch section
// pidx against patch symbol sym reaches another object directly: a
// 32-bit address field in code against an external symbol, which lies
// anywhere in the address space.
func (x *extractor) needsSlot(pidx uint32, typ, sym uint32) bool {
	if x.patch.Sections[pidx].Kind != patchfile.SectionText || sym == 0 {
		return false
	}
	rt, ok := x.arch.Relocs[typ]
	if !ok || rt.Class != arch.ClassAddress || rt.Size != 4 || rt.IsCall {
		return false
	}
	return x.patch.Symbols[sym].Kind == patchfile.SymExternal
}

// slot returns the offset in gotSection of a slot holding the address of
// sym plus addend, adding the section and the slot when needed.
func (x *extractor) slot(sym uint32, addend int64) (uint32, uint64, error) {
	if x.gotIdx < 0 {
		x.gotIdx = len(x.patch.Sections)
		x.patch.Sections = append(x.patch.Sections, patchfile.Section{Name: gotSection, Kind: patchfile.SectionData, Align: 8})
		x.gotSym = x.addSymbol(patchfile.Symbol{Name: gotSection, Kind: patchfile.SymPatch, Type: elf.STT_SECTION, Section: uint32(x.gotIdx)})
		x.slots = map[[2]int64]uint64{}
	}
	key := [2]int64{int64(sym), addend}
	if off, ok := x.slots[key]; ok {
		return x.gotSym, off, nil
	}
	abs, ok := x.arch.SlotReloc(arch.ClassAddress)
	if !ok {
		return 0, 0, fmt.Errorf("no slot relocation for %v", x.arch.Machine)
	}
	sec := &x.patch.Sections[x.gotIdx]
	off := sec.Size
	sec.Data = append(sec.Data, make([]byte, x.arch.PtrSize)...)
	sec.Size += uint64(x.arch.PtrSize)
	x.patch.Relocs = append(x.patch.Relocs, patchfile.Reloc{Section: uint32(x.gotIdx), Offset: off, Type: abs, Symbol: sym, Addend: addend})
	x.slots[key] = off
	return x.gotSym, off, nil
}

// gotRef turns a GOT-relative reference (GOTPCREL and its relaxable
// forms) into a PC-relative reference to a slot of the patch.
func (x *extractor) gotRef(pidx uint32, off uint64, sym uint32, addend int64) error {
	pc32, ok := x.arch.PCRel32(false)
	if !ok {
		return fmt.Errorf("no PC-relative relocation for %v", x.arch.Machine)
	}
	gs, slotOff, err := x.slot(sym, 0)
	if err != nil {
		return err
	}
	x.patch.Relocs = append(x.patch.Relocs, patchfile.Reloc{Section: pidx, Offset: off, Type: pc32, Symbol: gs, Addend: int64(slotOff) + addend})
	return nil
}

// rewriteFarRefs sends each far reference through a slot: the
// instruction is rewritten in place, or moved to a thunk appended to its
// section (arch.Indirect).
func (x *extractor) rewriteFarRefs() error {
	pc32, ok1 := x.arch.PCRel32(false)
	call32, ok2 := x.arch.PCRel32(true)
	if !ok1 || !ok2 || x.arch.Indirect == nil || x.arch.InsnLen == nil {
		if len(x.far) > 0 {
			return fmt.Errorf("%s: %v has no rewrite of references to other objects", x.name, x.arch.Machine)
		}
		return nil
	}
	for _, f := range x.far {
		sec := &x.patch.Sections[f.pidx]
		symName := x.patch.Symbols[f.sym].Name
		fail := func(reason string) error {
			return &RelocError{Object: x.name, Section: sec.Name, Offset: f.off, Symbol: symName, Reason: reason}
		}
		fn, fstart, fend, ok := x.funcAround(f.pfSec, f.off)
		if !ok {
			return fail("a reference to another object's symbol outside any function cannot be sent through a slot")
		}
		start, end, err := x.insnAround(sec.Data, fstart, fend, f.off)
		if err != nil {
			return fail(fmt.Sprintf("decode %s: %v", fn, err))
		}
		for _, r := range x.patch.Relocs {
			if r.Section == f.pidx && r.Offset >= start && r.Offset < end && r.Offset != f.off {
				return fail(fmt.Sprintf("the instruction at %s+%#x has a second relocation; it cannot be moved to go through a slot", fn, start-fstart))
			}
		}
		ind, err := x.arch.Indirect(sec.Data[start:end], int(f.off-start))
		if errors.Is(err, arch.ErrDirectBranch) {
			// A call or jump: the patcher gives it a far-jump stub
			// when the callee is out of reach.
			x.patch.Relocs = append(x.patch.Relocs, patchfile.Reloc{Section: f.pidx, Offset: f.off, Type: call32, Symbol: f.sym, Addend: f.addend})
			continue
		}
		if err != nil {
			return fail(fmt.Sprintf("%s lives in another object, out of reach of patch code, and the instruction at %s+%#x cannot be rewritten to read its address from a slot (%v); "+
				"change the fix to copy %s into a local variable first, or take its address with a plain assignment", symName, fn, start-fstart, err, symName))
		}
		// The address the instruction meant: a PC-relative field's
		// addend counts from the end of the instruction.
		target := f.addend
		if x.arch.Relocs[f.typ].PCRel {
			target += int64(end - f.off)
		}
		copy(sec.Data[start:end], ind.Site)
		thunk := uint64(0)
		if ind.Thunk != nil {
			thunk = sec.Size
			sec.Data = append(sec.Data, ind.Thunk...)
			sec.Size += uint64(len(ind.Thunk))
		}
		for _, fl := range ind.Fields {
			pos := start + uint64(fl.Off)
			if fl.InThunk {
				pos = thunk + uint64(fl.Off)
			}
			var to uint64
			switch fl.To {
			case arch.ToSlot:
				gs, slotOff, err := x.slot(f.sym, target)
				if err != nil {
					return fail(err.Error())
				}
				x.patch.Relocs = append(x.patch.Relocs, patchfile.Reloc{Section: f.pidx, Offset: pos, Type: pc32, Symbol: gs, Addend: int64(slotOff) + fl.Addend})
				continue
			case arch.ToThunk:
				to = thunk
			case arch.ToBack:
				to = end
			}
			v := int64(to) + fl.Addend - int64(pos)
			if v != int64(int32(v)) {
				return fail("thunk out of reach of its instruction")
			}
			x.pf.ByteOrder.PutUint32(sec.Data[pos:], uint32(int32(v)))
		}
	}
	return nil
}

// funcAround finds the function symbol of section pfSec of the link that
// covers offset off, and its bounds as section offsets.
func (x *extractor) funcAround(pfSec int, off uint64) (string, uint64, uint64, bool) {
	base := x.pf.Sections[pfSec].Addr
	for _, s := range x.syms {
		if int(s.Section) != pfSec || elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value < base {
			continue
		}
		st := s.Value - base
		if off >= st && off < st+s.Size {
			return s.Name, st, st + s.Size, true
		}
	}
	return "", 0, 0, false
}

// insnAround decodes code from fstart and returns the bounds of the
// instruction that contains off.
func (x *extractor) insnAround(code []byte, fstart, fend, off uint64) (uint64, uint64, error) {
	if fend > uint64(len(code)) {
		return 0, 0, fmt.Errorf("function ends past its section")
	}
	for pos := fstart; pos < fend; {
		n, err := x.arch.InsnLen(code[pos:fend])
		if err != nil {
			return 0, 0, fmt.Errorf("at +%#x: %w", pos-fstart, err)
		}
		if off < pos+uint64(n) {
			return pos, pos + uint64(n), nil
		}
		pos += uint64(n)
	}
	return 0, 0, fmt.Errorf("offset +%#x is past the function's code", off-fstart)
}
