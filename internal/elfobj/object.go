package elfobj

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// maxSectionRead bounds what one section or segment read may allocate, so
// that a corrupt header cannot make Open allocate gigabytes. The largest
// .eh_frame or .dynsym seen in practice (libxul, chromium) is a few tens of
// MiB.
const maxSectionRead = 512 << 20

// ErrNoSegment means no PT_LOAD segment of the object is mapped at the
// given file offset: the mapping belongs to another file, or the file on
// disk was replaced since the process mapped it.
var ErrNoSegment = errors.New("no loadable segment at this file offset")

// Object is what the build and the patcher need to know about one ELF file
// on disk. Open reads everything it holds once; the file is not kept open,
// so callers can cache an Object per path and build-id.
type Object struct {
	// Path is the file the object was read from, for messages.
	Path      string
	Type      elf.Type
	Machine   elf.Machine
	Class     elf.Class
	ByteOrder binary.ByteOrder
	Entry     uint64
	// BuildID is the GNU build-id, or nil when the object has none.
	BuildID []byte
	// Soname is DT_SONAME for a shared library, empty otherwise.
	Soname string
	// Needed lists DT_NEEDED, in order.
	Needed []string

	// Loads are the PT_LOAD segments in file order.
	Loads []Segment
	// TLS is the PT_TLS segment, nil when the object has no thread-local
	// storage.
	TLS *TLS
	// GNUEHFrame is the PT_GNU_EH_FRAME segment (it covers .eh_frame_hdr),
	// nil when absent.
	GNUEHFrame *Segment

	// EHFrame and EHFrameHdr hold the call frame information and its
	// binary-search table, with their link-time addresses. Either may be
	// empty: objects built with -fno-asynchronous-unwind-tables and without
	// exceptions have no .eh_frame.
	EHFrame    Blob
	EHFrameHdr Blob

	symbols    []Symbol // .dynsym entries first, then .symtab entries
	byName     map[string][]int32
	funcs      []int32  // indexes of defined functions, by address
	funcMaxEnd []uint64 // funcMaxEnd[i] = max end of funcs[0..i]
	relocs     []DynReloc
	// pie tells a PIE from a shared library (both ET_DYN): DF_1_PIE, or
	// a program interpreter without a soname (libc.so.6 has an
	// interpreter too, being runnable, but also a soname).
	pie       bool
	hasInterp bool
}

// Segment is a program header.
type Segment struct {
	Type   elf.ProgType
	Flags  elf.ProgFlag
	Offset uint64
	Vaddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

// Contains reports whether the link-time address addr falls inside the
// segment's memory image.
func (s Segment) Contains(addr uint64) bool { return addr >= s.Vaddr && addr-s.Vaddr < s.Memsz }

// TLS describes the PT_TLS segment: the initialisation image (.tdata,
// Filesz bytes at Vaddr) followed by zeroes (.tbss) up to Memsz.
type TLS struct {
	Vaddr  uint64
	Offset uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

// Blob is the content of a section together with the address it is linked
// at.
type Blob struct {
	Addr uint64
	Data []byte
}

// Open reads the ELF file at path.
func Open(path string) (*Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ELF object: %w", err)
	}
	defer f.Close()
	o, err := New(f, path)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// New reads an ELF object from r; name is used in messages.
func New(r io.ReaderAt, name string) (o *Object, err error) {
	// debug/elf is fuzzed upstream, but a panic here would take down the
	// patcher mid-operation; turn any that slips through into an error.
	defer func() {
		if p := recover(); p != nil {
			o, err = nil, fmt.Errorf("read ELF object %s: malformed file (%v)", name, p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	o = &Object{
		Path:      name,
		Type:      f.Type,
		Machine:   f.Machine,
		Class:     f.Class,
		ByteOrder: f.ByteOrder,
		Entry:     f.Entry,
	}
	if err := o.readSegments(f); err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	if id, err := BuildID(f); err == nil {
		o.BuildID = id
	} else if !errors.Is(err, ErrNoBuildID) {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	if err := o.readFrames(f); err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	if err := o.readDynamic(f); err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	o.pie = o.Type == elf.ET_DYN && (o.pie || o.hasInterp && o.Soname == "")
	dynsyms, err := o.readSymbols(f)
	if err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	if err := o.readRelocs(f, dynsyms); err != nil {
		return nil, fmt.Errorf("read ELF object %s: %w", name, err)
	}
	return o, nil
}

func (o *Object) readSegments(f *elf.File) error {
	for _, p := range f.Progs {
		s := Segment{Type: p.Type, Flags: p.Flags, Offset: p.Off, Vaddr: p.Vaddr,
			Filesz: p.Filesz, Memsz: p.Memsz, Align: p.Align}
		switch p.Type {
		case elf.PT_LOAD:
			o.Loads = append(o.Loads, s)
		case elf.PT_TLS:
			o.TLS = &TLS{Vaddr: p.Vaddr, Offset: p.Off, Filesz: p.Filesz, Memsz: p.Memsz, Align: p.Align}
		case elf.PT_GNU_EH_FRAME:
			seg := s
			o.GNUEHFrame = &seg
		case elf.PT_INTERP:
			o.hasInterp = true
		}
	}
	if o.TLS != nil && o.TLS.Align > 1 && o.TLS.Align&(o.TLS.Align-1) != 0 {
		return fmt.Errorf("PT_TLS alignment %d is not a power of two", o.TLS.Align)
	}
	return nil
}

// readFrames finds .eh_frame and .eh_frame_hdr. A stripped object may lack
// section headers; PT_GNU_EH_FRAME then locates the header, and the
// header's eh_frame_ptr locates .eh_frame, which runs at most to the end of
// its segment (the parser stops at the zero terminator).
func (o *Object) readFrames(f *elf.File) error {
	if s := f.Section(".eh_frame_hdr"); s != nil && s.Type == elf.SHT_PROGBITS {
		data, err := sectionData(s)
		if err != nil {
			return err
		}
		o.EHFrameHdr = Blob{Addr: s.Addr, Data: data}
	} else if o.GNUEHFrame != nil {
		data, err := o.readAt(f, o.GNUEHFrame.Vaddr, o.GNUEHFrame.Filesz)
		if err != nil {
			return fmt.Errorf("read PT_GNU_EH_FRAME: %w", err)
		}
		o.EHFrameHdr = Blob{Addr: o.GNUEHFrame.Vaddr, Data: data}
	}
	if s := f.Section(".eh_frame"); s != nil && s.Type == elf.SHT_PROGBITS {
		data, err := sectionData(s)
		if err != nil {
			return err
		}
		o.EHFrame = Blob{Addr: s.Addr, Data: data}
		return nil
	}
	if len(o.EHFrameHdr.Data) < 8 || o.EHFrameHdr.Data[0] != 1 {
		return nil
	}
	addr, ok := decodeHdrPointer(o.EHFrameHdr, o.ByteOrder)
	if !ok {
		return nil
	}
	for _, l := range o.Loads {
		if l.Contains(addr) && addr-l.Vaddr < l.Filesz {
			data, err := o.readAt(f, addr, l.Filesz-(addr-l.Vaddr))
			if err != nil {
				return fmt.Errorf("read .eh_frame through PT_GNU_EH_FRAME: %w", err)
			}
			o.EHFrame = Blob{Addr: addr, Data: data}
		}
	}
	return nil
}

// decodeHdrPointer decodes eh_frame_ptr of an .eh_frame_hdr for the two
// encodings linkers write (pcrel|sdata4 and absptr/udata8).
func decodeHdrPointer(hdr Blob, bo binary.ByteOrder) (uint64, bool) {
	enc := hdr.Data[1]
	switch enc {
	case 0x1b: // DW_EH_PE_pcrel | DW_EH_PE_sdata4
		return hdr.Addr + 4 + uint64(int64(int32(bo.Uint32(hdr.Data[4:])))), true
	case 0x03: // udata4
		return uint64(bo.Uint32(hdr.Data[4:])), true
	case 0x00, 0x04: // absptr, udata8
		if len(hdr.Data) < 12 {
			return 0, false
		}
		return bo.Uint64(hdr.Data[4:]), true
	}
	return 0, false
}

// readAt reads n bytes of the file image at link-time address addr.
func (o *Object) readAt(f *elf.File, addr, n uint64) ([]byte, error) {
	if n > maxSectionRead {
		return nil, fmt.Errorf("%d bytes at %#x is too large", n, addr)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		off := addr - p.Vaddr
		if n > p.Filesz-off {
			n = p.Filesz - off
		}
		buf := make([]byte, n)
		if _, err := p.ReadAt(buf, int64(off)); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
			return nil, fmt.Errorf("read %d bytes at %#x: %w", n, addr, err)
		}
		return buf, nil
	}
	return nil, fmt.Errorf("address %#x is not in the file image of any PT_LOAD segment", addr)
}

func sectionData(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if s.Size > maxSectionRead {
		return nil, fmt.Errorf("section %s: size %d is too large", s.Name, s.Size)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read section %s: %w", s.Name, err)
	}
	return data, nil
}

func (o *Object) readDynamic(f *elf.File) error {
	if f.Section(".dynamic") == nil {
		return nil
	}
	// DynString fails on a .dynamic whose string table is missing; an
	// object like that cannot be loaded anyway, so report it.
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return fmt.Errorf("read DT_NEEDED: %w", err)
	}
	o.Needed = needed
	sonames, err := f.DynString(elf.DT_SONAME)
	if err != nil {
		return fmt.Errorf("read DT_SONAME: %w", err)
	}
	if len(sonames) > 0 {
		o.Soname = sonames[0]
	}
	flags, err := f.DynValue(elf.DT_FLAGS_1)
	if err != nil {
		return fmt.Errorf("read DT_FLAGS_1: %w", err)
	}
	for _, v := range flags {
		if elf.DynFlag1(v)&elf.DF_1_PIE != 0 {
			o.pie = true
		}
	}
	return nil
}

// LinkBase is the lowest address of the object's PT_LOAD segments, rounded
// down to the page: 0 for a shared library or PIE, the fixed load address
// (usually 0x400000) for a non-PIE executable.
func (o *Object) LinkBase() uint64 {
	base := ^uint64(0)
	for _, l := range o.Loads {
		if v := pageDown(l.Vaddr); v < base {
			base = v
		}
	}
	if base == ^uint64(0) {
		return 0
	}
	return base
}

// Mapping is one file mapping of the object, as a line of
// /proc/PID/maps shows it.
type Mapping struct {
	Start, End uint64
	// Offset is the file offset mapped at Start.
	Offset uint64
	// Exec is the x permission: it tells apart two segments that share a
	// file page (the text and data of a small object).
	Exec bool
}

// ErrAmbiguousMapping means the mappings given fit more than one load
// bias; pass every mapping of the object, not just one.
var ErrAmbiguousMapping = errors.New("the mappings fit more than one load bias")

// LoadBias computes the difference between run-time and link-time
// addresses (0 for a non-PIE executable) from the object's file mappings
// in a process. One mapping is often enough, but segments that share a
// file page map the same offset at different addresses, so pass all of
// them: the bias is the one every mapping agrees with. A mapping of the
// second half of a segment (RELRO protection splits the data segment)
// counts like any other.
func (o *Object) LoadBias(maps ...Mapping) (uint64, error) {
	if len(maps) == 0 {
		return 0, fmt.Errorf("load bias of %s: no mappings given", o.Path)
	}
	var cands []uint64
	for i, m := range maps {
		mine := o.biasCandidates(m)
		if i == 0 {
			cands = mine
		} else {
			kept := cands[:0]
			for _, c := range cands {
				if contains(mine, c) {
					kept = append(kept, c)
				}
			}
			cands = kept
		}
		if len(cands) == 0 {
			return 0, fmt.Errorf("load bias of %s from mapping %#x-%#x at file offset %#x: %w (was the file replaced after the process mapped it?)",
				o.Path, m.Start, m.End, m.Offset, ErrNoSegment)
		}
	}
	if len(cands) > 1 {
		return 0, fmt.Errorf("load bias of %s: %w (%#x or %#x)", o.Path, ErrAmbiguousMapping, cands[0], cands[1])
	}
	return cands[0], nil
}

// biasCandidates lists the biases under which mapping m is a mapping of
// one of the object's PT_LOAD segments.
func (o *Object) biasCandidates(m Mapping) []uint64 {
	var out []uint64
	for _, l := range o.Loads {
		lo := pageDown(l.Offset)
		if l.Filesz == 0 || m.Offset < lo || m.Offset >= l.Offset+l.Filesz || m.Exec != (l.Flags&elf.PF_X != 0) {
			continue
		}
		// File offset m.Offset is at link-time address
		// l.Vaddr + (m.Offset - l.Offset); the arithmetic wraps
		// correctly in uint64 whichever side of the segment start the
		// mapping begins.
		bias := m.Start + l.Offset - m.Offset - l.Vaddr
		// The file part of a segment is mapped up to the page holding its
		// last byte; a longer mapping is something else.
		if m.End > m.Start && m.End-bias > pageUp(l.Vaddr+l.Filesz) {
			continue
		}
		if !contains(out, bias) {
			out = append(out, bias)
		}
	}
	return out
}

// SegmentAt returns the PT_LOAD segment holding the link-time address addr.
func (o *Object) SegmentAt(addr uint64) (Segment, bool) {
	for _, l := range o.Loads {
		if l.Contains(addr) {
			return l, true
		}
	}
	return Segment{}, false
}

// ExecRanges returns the link-time address ranges of the executable
// PT_LOAD segments, sorted, as [start, end) pairs.
func (o *Object) ExecRanges() [][2]uint64 {
	var r [][2]uint64
	for _, l := range o.Loads {
		if l.Flags&elf.PF_X != 0 {
			r = append(r, [2]uint64{l.Vaddr, l.Vaddr + l.Memsz})
		}
	}
	sort.Slice(r, func(i, j int) bool { return r[i][0] < r[j][0] })
	return r
}

var pageSize = uint64(os.Getpagesize())

func pageDown(v uint64) uint64 { return v &^ (pageSize - 1) }

func pageUp(v uint64) uint64 { return pageDown(v + pageSize - 1) }

// IsExecutable tells an executable (non-PIE or PIE) from a shared library.
func (o *Object) IsExecutable() bool { return o.Type == elf.ET_EXEC || o.isPIE() }
