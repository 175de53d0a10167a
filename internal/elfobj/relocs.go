package elfobj

import (
	"debug/elf"
	"fmt"
)

// SlotKind says what the dynamic linker stores in the place a dynamic
// relocation names, independent of the architecture's numbering.
type SlotKind uint8

const (
	// SlotOther is a relocation type this package does not classify.
	SlotOther SlotKind = iota
	// SlotGlobDat holds the address of the symbol (a GOT entry).
	SlotGlobDat
	// SlotJumpSlot holds the address of a function called through the
	// PLT; before lazy binding it points back into the PLT.
	SlotJumpSlot
	// SlotIRelative holds what the resolver at Addend returned: the
	// implementation of a local ifunc.
	SlotIRelative
	// SlotTPOff holds the symbol's offset from the thread pointer
	// (initial-exec TLS).
	SlotTPOff
	// SlotDTPMod holds the TLS module id of the object defining the
	// symbol (general-dynamic and local-dynamic TLS).
	SlotDTPMod
	// SlotDTPOff holds the symbol's offset in its module's TLS block.
	SlotDTPOff
	// SlotRelative holds load bias + Addend.
	SlotRelative
	// SlotAbsolute holds the symbol's address + Addend (a data pointer).
	SlotAbsolute
	// SlotCopy asks the loader to copy the symbol's initial value from
	// the library that defines it into this executable.
	SlotCopy
)

var slotKindNames = [...]string{"other", "glob_dat", "jump_slot", "irelative", "tpoff", "dtpmod", "dtpoff", "relative", "absolute", "copy"}

func (k SlotKind) String() string {
	if int(k) < len(slotKindNames) {
		return slotKindNames[k]
	}
	return fmt.Sprintf("slotkind(%d)", uint8(k))
}

// dynRelocKinds classifies dynamic relocation types, one table per
// machine; supporting an architecture means adding its table.
var dynRelocKinds = map[elf.Machine]map[uint32]SlotKind{
	elf.EM_X86_64: {
		uint32(elf.R_X86_64_GLOB_DAT):   SlotGlobDat,
		uint32(elf.R_X86_64_JMP_SLOT):   SlotJumpSlot,
		uint32(elf.R_X86_64_IRELATIVE):  SlotIRelative,
		uint32(elf.R_X86_64_TPOFF64):    SlotTPOff,
		uint32(elf.R_X86_64_DTPMOD64):   SlotDTPMod,
		uint32(elf.R_X86_64_DTPOFF64):   SlotDTPOff,
		uint32(elf.R_X86_64_RELATIVE):   SlotRelative,
		uint32(elf.R_X86_64_RELATIVE64): SlotRelative,
		uint32(elf.R_X86_64_64):         SlotAbsolute,
		uint32(elf.R_X86_64_COPY):       SlotCopy,
	},
	elf.EM_AARCH64: {
		uint32(elf.R_AARCH64_GLOB_DAT):     SlotGlobDat,
		uint32(elf.R_AARCH64_JUMP_SLOT):    SlotJumpSlot,
		uint32(elf.R_AARCH64_IRELATIVE):    SlotIRelative,
		uint32(elf.R_AARCH64_TLS_TPREL64):  SlotTPOff,
		uint32(elf.R_AARCH64_TLS_DTPMOD64): SlotDTPMod,
		uint32(elf.R_AARCH64_TLS_DTPREL64): SlotDTPOff,
		uint32(elf.R_AARCH64_RELATIVE):     SlotRelative,
		uint32(elf.R_AARCH64_ABS64):        SlotAbsolute,
		uint32(elf.R_AARCH64_COPY):         SlotCopy,
	},
}

// DynReloc is one dynamic relocation of the object (.rela.dyn, .rela.plt):
// a place the dynamic linker fills at load time. The patcher reads such
// places in the live process to learn what the loader resolved.
type DynReloc struct {
	// Offset is the link-time address of the slot; add the load bias for
	// the run-time address.
	Offset uint64
	// Type is the machine's relocation type (elf.R_X86_64_GLOB_DAT as a
	// number).
	Type uint32
	Kind SlotKind
	// Symbol is the .dynsym entry the relocation names; its Name is empty
	// for relocations without a symbol (RELATIVE, IRELATIVE, and TLS
	// relocations against local variables, whose Addend carries the
	// variable's offset instead).
	Symbol Symbol
	Addend int64
	// Section is the relocation section it was read from.
	Section string
}

func (o *Object) readRelocs(f *elf.File, dynsyms []Symbol) error {
	kinds := dynRelocKinds[o.Machine]
	for i, s := range f.Sections {
		if s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL || s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		// Relocations of a static executable (.rela.iplt) name no symbol
		// table; all others name .dynsym.
		if s.Link != 0 && (int(s.Link) >= len(f.Sections) || f.Sections[s.Link].Type != elf.SHT_DYNSYM) {
			continue
		}
		data, err := sectionData(s)
		if err != nil {
			return err
		}
		rels, err := decodeRelocs(data, o.Class, o.ByteOrder, s.Type == elf.SHT_RELA)
		if err != nil {
			return fmt.Errorf("section %s (index %d): %w", s.Name, i, err)
		}
		for _, r := range rels {
			d := DynReloc{Offset: r.off, Type: r.typ, Kind: kinds[r.typ], Addend: r.addend, Section: s.Name}
			if r.sym != 0 {
				if int(r.sym) > len(dynsyms) {
					return fmt.Errorf("section %s: relocation at %#x names symbol %d of %d", s.Name, r.off, r.sym, len(dynsyms))
				}
				d.Symbol = dynsyms[r.sym-1]
			}
			o.relocs = append(o.relocs, d)
		}
	}
	return nil
}

type rawReloc struct {
	off    uint64
	typ    uint32
	sym    uint32
	addend int64
}

// decodeRelocs decodes Elf32/Elf64 Rel/Rela records. The addend of a REL
// record lives in the place itself and is reported as 0.
func decodeRelocs(data []byte, class elf.Class, bo interface {
	Uint32([]byte) uint32
	Uint64([]byte) uint64
}, rela bool) ([]rawReloc, error) {
	var size int
	switch {
	case class == elf.ELFCLASS64 && rela:
		size = 24
	case class == elf.ELFCLASS64:
		size = 16
	case rela:
		size = 12
	default:
		size = 8
	}
	if len(data)%size != 0 {
		return nil, fmt.Errorf("size %d is not a multiple of the %d-byte record", len(data), size)
	}
	out := make([]rawReloc, 0, len(data)/size)
	for p := 0; p+size <= len(data); p += size {
		var r rawReloc
		if class == elf.ELFCLASS64 {
			r.off = bo.Uint64(data[p:])
			info := bo.Uint64(data[p+8:])
			r.sym, r.typ = uint32(info>>32), uint32(info)
			if rela {
				r.addend = int64(bo.Uint64(data[p+16:]))
			}
		} else {
			r.off = uint64(bo.Uint32(data[p:]))
			info := bo.Uint32(data[p+4:])
			r.sym, r.typ = info>>8, info&0xff
			if rela {
				r.addend = int64(int32(bo.Uint32(data[p+8:])))
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// DynRelocs returns every dynamic relocation of the object, in file
// order. The slice is shared: do not modify it.
func (o *Object) DynRelocs() []DynReloc { return o.relocs }

// GOTSlots returns the places the object's own dynamic relocations fill
// for the symbol name (optionally "name@VERSION"): GOT entries, PLT slots,
// TLS offsets and module ids. Relocations without a symbol are included
// when they stand for a symbol this object defines: an IRELATIVE slot
// whose resolver is the ifunc name, a TPOFF or DTPOFF slot whose addend is
// the TLS variable name's offset.
func (o *Object) GOTSlots(name string) []DynReloc {
	bare, version, wantDefault := ParseVersionedName(name)
	var ifuncs, tlsOffsets []uint64
	for _, k := range o.byName[bare] {
		s := &o.symbols[k]
		if !s.Defined() || version != "" && !versionMatches(s, version, wantDefault) {
			continue
		}
		switch {
		case s.IsIFunc():
			ifuncs = append(ifuncs, s.Value)
		case s.IsTLS():
			tlsOffsets = append(tlsOffsets, s.Value)
		}
	}
	var out []DynReloc
	for _, r := range o.relocs {
		switch {
		case r.Symbol.Name != "":
			if r.Symbol.Name == bare && (version == "" || r.Symbol.Version == version) && isSlot(r.Kind) {
				out = append(out, r)
			}
		case r.Kind == SlotIRelative && contains(ifuncs, uint64(r.Addend)):
			out = append(out, r)
		case (r.Kind == SlotTPOff || r.Kind == SlotDTPOff) && contains(tlsOffsets, uint64(r.Addend)):
			out = append(out, r)
		}
	}
	return out
}

// ModuleIDSlots returns the DTPMOD slots that hold this object's own TLS
// module id: those without a symbol (local-dynamic, or general-dynamic
// access to a local variable) and those naming a TLS symbol this object
// defines. An executable usually has none: its module id is always 1.
func (o *Object) ModuleIDSlots() []DynReloc {
	var out []DynReloc
	for _, r := range o.relocs {
		if r.Kind == SlotDTPMod && (r.Symbol.Name == "" || r.Symbol.Defined()) {
			out = append(out, r)
		}
	}
	return out
}

func isSlot(k SlotKind) bool {
	switch k {
	case SlotGlobDat, SlotJumpSlot, SlotTPOff, SlotDTPMod, SlotDTPOff, SlotAbsolute, SlotIRelative:
		return true
	}
	return false
}

func contains(vs []uint64, v uint64) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}
