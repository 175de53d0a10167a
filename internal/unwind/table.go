package unwind

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/cfi"
	"github.com/hotpatch/hotpatch/internal/elfobj"
)

// Section is the content of an .eh_frame-format section and the address
// its first byte is linked (or mapped) at. PC-relative pointers are
// decoded against it.
type Section struct {
	Addr uint64
	Data []byte
}

// Table is the call frame information of one object (or of a patch
// region), indexed by address. It is built once, outside the pause, and
// only read while threads are stopped, so it is safe for concurrent use.
type Table struct {
	// Name names the object for messages.
	Name string
	arch *Arch
	// addr is the address of data[0].
	addr uint64
	data []byte
	cies []cie
	// fdes are sorted by pcBegin.
	fdes []fde
	// fromHdr records that the index came from .eh_frame_hdr.
	fromHdr bool
}

// cie is a parsed Common Information Entry. Instruction and expression
// bytes are kept as offsets into the table's data, so that the index
// holds no pointers.
type cie struct {
	offset      int
	codeAlign   uint64
	dataAlign   int64
	ra          int
	fdeEnc      uint8
	lsdaEnc     uint8
	hasAugData  bool
	signal      bool
	instrStart  uint32
	instrEnd    uint32
	personality uint64
}

// fde is a parsed Frame Description Entry: the code range it covers (as
// linked), its CIE and its instructions.
type fde struct {
	pcBegin, pcEnd uint64
	cie            uint32
	instrStart     uint32
	instrEnd       uint32
	offset         uint32
}

// FDEInfo describes one FDE, for diagnostics and tests.
type FDEInfo struct {
	// Start and End bound the code range, as linked: [Start, End).
	Start, End uint64
	// Offset is where the FDE is in the section.
	Offset int
	// Signal says the CIE has the "S" augmentation: the code is a signal
	// return trampoline.
	Signal bool
	// Augmentation is the CIE's augmentation string, such as "zR".
	Augmentation string
}

// NewTable parses call frame information in .eh_frame format. hdr is the
// matching .eh_frame_hdr, or empty: when it is present and well formed,
// its sorted table locates the FDEs; otherwise every entry of ehFrame is
// read in order. Patch regions carry no header and absolute pointers;
// that is the same format with other encodings.
func NewTable(a *Arch, name string, ehFrame, hdr Section) (*Table, error) {
	if uint64(len(ehFrame.Data)) >= 1<<32 {
		return nil, fmt.Errorf("call frame information of %s: %d bytes is more than this unwinder indexes", name, len(ehFrame.Data))
	}
	t := &Table{Name: name, arch: a, addr: ehFrame.Addr, data: ehFrame.Data}
	p := parser{t: t, cieIndex: map[int]uint32{}}
	if len(hdr.Data) > 0 {
		if err := p.fromHdr(hdr); err == nil {
			t.fromHdr = true
			return t, nil
		}
		// A header that does not match its .eh_frame (a tool rewrote
		// one of them) is not worth failing for: the frames themselves
		// are what matters.
		t.cies, t.fdes, p.cieIndex = nil, nil, map[int]uint32{}
	}
	if err := p.scan(); err != nil {
		return nil, fmt.Errorf("call frame information of %s: %w", name, err)
	}
	return t, nil
}

// TableForObject builds the table of an ELF object from its .eh_frame and
// .eh_frame_hdr, at link-time addresses.
func TableForObject(o *elfobj.Object) (*Table, error) {
	a, err := ForMachine(o.Machine)
	if err != nil {
		return nil, fmt.Errorf("call frame information of %s: %w", o.Path, err)
	}
	return NewTable(a, o.Path, Section{Addr: o.EHFrame.Addr, Data: o.EHFrame.Data},
		Section{Addr: o.EHFrameHdr.Addr, Data: o.EHFrameHdr.Data})
}

// Len is the number of FDEs.
func (t *Table) Len() int { return len(t.fdes) }

// FromHdr reports whether the index was read from .eh_frame_hdr rather
// than built by walking .eh_frame.
func (t *Table) FromHdr() bool { return t.fromHdr }

// Bounds returns the lowest and the highest code address the table
// covers, as linked: [lo, hi).
func (t *Table) Bounds() (lo, hi uint64) {
	if len(t.fdes) == 0 {
		return 0, 0
	}
	lo = t.fdes[0].pcBegin
	for _, f := range t.fdes {
		hi = max(hi, f.pcEnd)
	}
	return lo, hi
}

// Entries lists the FDEs in address order.
func (t *Table) Entries() []FDEInfo {
	out := make([]FDEInfo, len(t.fdes))
	for i, f := range t.fdes {
		c := &t.cies[f.cie]
		out[i] = FDEInfo{Start: f.pcBegin, End: f.pcEnd, Offset: int(f.offset), Signal: c.signal,
			Augmentation: t.augmentation(c)}
	}
	return out
}

func (t *Table) augmentation(c *cie) string {
	r := reader{data: t.data, pos: c.offset}
	length := r.u32()
	if length == 0xffffffff {
		r.u64()
	}
	r.u32()
	r.u8()
	return r.cstring()
}

// lookup finds the FDE covering the link-time address pc.
func (t *Table) lookup(pc uint64) *fde {
	i := sort.Search(len(t.fdes), func(i int) bool { return t.fdes[i].pcBegin > pc }) - 1
	if i < 0 {
		return nil
	}
	if f := &t.fdes[i]; pc < f.pcEnd {
		return f
	}
	// FDEs may nest or overlap (a hand-written FDE inside another
	// range); look back a little for one that still covers pc.
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if f := &t.fdes[j]; pc >= f.pcBegin && pc < f.pcEnd {
			return f
		}
	}
	return nil
}

func (r *reader) cstring() string {
	start := r.pos
	for r.pos < len(r.data) && r.data[r.pos] != 0 {
		r.pos++
	}
	if r.pos >= len(r.data) {
		r.fail()
		return ""
	}
	s := string(r.data[start:r.pos])
	r.pos++
	return s
}

type parser struct {
	t        *Table
	cieIndex map[int]uint32
}

func (p *parser) errorf(off int, format string, args ...any) error {
	return &FormatError{Section: ".eh_frame", Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// entry reads the length and id of the record at off. It returns the
// offset just past the id field, the end of the record, the id and the
// offset of the id field.
func (p *parser) entry(off int) (body, end int, id uint32, idPos int, err error) {
	r := reader{data: p.t.data, pos: off}
	length := uint64(r.u32())
	if length == 0xffffffff {
		length = r.u64()
	}
	if r.bad {
		return 0, 0, 0, 0, p.errorf(off, "truncated record length")
	}
	if length == 0 {
		return r.pos, r.pos, 0, r.pos, nil
	}
	if length > uint64(r.remaining()) || length < 4 {
		return 0, 0, 0, 0, p.errorf(off, "record length %d runs past the end (%d bytes left)", length, r.remaining())
	}
	end = r.pos + int(length)
	idPos = r.pos
	id = r.u32()
	return r.pos, end, id, idPos, nil
}

// scan walks every record of .eh_frame.
func (p *parser) scan() error {
	data := p.t.data
	for off := 0; off < len(data); {
		if len(data)-off < 4 {
			return p.errorf(off, "%d stray bytes after the last record", len(data)-off)
		}
		body, end, id, idPos, err := p.entry(off)
		if err != nil {
			return err
		}
		if body == end {
			// The zero terminator ld places at the end; anything after it
			// is padding.
			break
		}
		if id == 0 {
			if _, err := p.cie(off); err != nil {
				return err
			}
		} else if err := p.fde(off, body, end, idPos, id, 0, false); err != nil {
			return err
		}
		off = end
	}
	sort.SliceStable(p.t.fdes, func(i, j int) bool { return p.t.fdes[i].pcBegin < p.t.fdes[j].pcBegin })
	return nil
}

// fromHdr reads the binary-search table of .eh_frame_hdr: version 1,
// encodings of eh_frame_ptr, fde_count and the table, then sorted
// (initial location, FDE address) pairs.
func (p *parser) fromHdr(hdr Section) error {
	bad := func(off int, format string, args ...any) error {
		return &FormatError{Section: ".eh_frame_hdr", Offset: off, Msg: fmt.Sprintf(format, args...)}
	}
	r := reader{data: hdr.Data}
	version, ptrEnc, countEnc, tableEnc := r.u8(), r.u8(), r.u8(), r.u8()
	if r.bad || version != 1 {
		return bad(0, "version %d", version)
	}
	bases := pointerBases{section: hdr.Addr, data: hdr.Addr}
	ehFrame, ind1, err := r.pointer(ptrEnc, p.t.arch.PtrSize, bases)
	if err != nil || ind1 {
		return bad(4, "eh_frame_ptr: %v", err)
	}
	if ehFrame != p.t.addr {
		return bad(4, "eh_frame_ptr %#x does not point at .eh_frame (%#x)", ehFrame, p.t.addr)
	}
	count, ind2, err := r.pointer(countEnc, p.t.arch.PtrSize, bases)
	if err != nil || ind2 || countEnc == cfi.PEOmit {
		return bad(r.pos, "fde_count: %v", err)
	}
	size := pointerSize(tableEnc, p.t.arch.PtrSize)
	if tableEnc == cfi.PEOmit || size == 0 || count > uint64(r.remaining()/(2*size)) {
		return bad(r.pos, "table of %d entries with encoding %#x does not fit", count, tableEnc)
	}
	p.t.fdes = make([]fde, 0, count)
	for i := uint64(0); i < count; i++ {
		loc, _, err1 := r.pointer(tableEnc, p.t.arch.PtrSize, bases)
		addr, _, err2 := r.pointer(tableEnc, p.t.arch.PtrSize, bases)
		if err1 != nil || err2 != nil {
			return bad(r.pos, "table entry %d: %v %v", i, err1, err2)
		}
		off := addr - p.t.addr
		if addr < p.t.addr || off >= uint64(len(p.t.data)) {
			return bad(r.pos, "table entry %d points at %#x, outside .eh_frame", i, addr)
		}
		body, end, id, idPos, err := p.entry(int(off))
		if err != nil {
			return err
		}
		if id == 0 || body == end {
			return bad(r.pos, "table entry %d points at a CIE or terminator at %#x", i, addr)
		}
		if err := p.fde(int(off), body, end, idPos, id, loc, true); err != nil {
			return err
		}
	}
	fdes := p.t.fdes
	if !sort.SliceIsSorted(fdes, func(i, j int) bool { return fdes[i].pcBegin < fdes[j].pcBegin }) {
		sort.SliceStable(fdes, func(i, j int) bool { return fdes[i].pcBegin < fdes[j].pcBegin })
	}
	return nil
}

// cie parses the CIE at off (once) and returns its index.
func (p *parser) cie(off int) (uint32, error) {
	if i, ok := p.cieIndex[off]; ok {
		return i, nil
	}
	body, end, id, _, err := p.entry(off)
	if err != nil {
		return 0, err
	}
	if body == end || id != 0 {
		return 0, p.errorf(off, "an FDE points here for its CIE, but there is none")
	}
	r := reader{data: p.t.data[:end], pos: body}
	c := cie{offset: off, fdeEnc: cfi.PEAbsptr, lsdaEnc: cfi.PEOmit}
	version := r.u8()
	if version != 1 && version != 3 && version != 4 {
		return 0, p.errorf(off, "CIE version %d", version)
	}
	aug := r.cstring()
	if strings.HasPrefix(aug, "eh") {
		// gcc before 3.0 stored a pointer-sized "eh" data word here.
		r.bytes(p.t.arch.PtrSize)
		aug = aug[2:]
	}
	if version == 4 {
		r.u8() // address_size
		r.u8() // segment_selector_size
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.ra = int(r.u8())
	} else {
		c.ra = int(r.uleb())
	}
	if r.bad {
		return 0, p.errorf(off, "truncated CIE")
	}
	if c.ra >= p.t.arch.NumRegs {
		return 0, p.errorf(off, "return address column %d is not a register the %s unwinder tracks", c.ra, p.t.arch.Name)
	}
	if strings.HasPrefix(aug, "z") {
		c.hasAugData = true
		n := r.uleb()
		if n > uint64(r.remaining()) {
			return 0, p.errorf(off, "augmentation data of %d bytes runs past the CIE", n)
		}
		augEnd := r.pos + int(n)
		ar := reader{data: p.t.data[:augEnd], pos: r.pos}
	letters:
		for _, l := range aug[1:] {
			switch l {
			case 'L':
				c.lsdaEnc = ar.u8()
			case 'R':
				c.fdeEnc = ar.u8()
			case 'P':
				enc := ar.u8()
				v, _, err := ar.pointer(enc, p.t.arch.PtrSize, pointerBases{section: p.t.addr})
				if err != nil {
					return 0, p.errorf(off, "personality pointer: %v", err)
				}
				c.personality = v
			case 'S':
				c.signal = true
			case 'B', 'G':
				// AArch64 branch protection and memory tagging: no data,
				// nothing the unwinder must do differently.
			default:
				// Augmentation data has a length: the remaining letters
				// can be skipped without understanding them.
				break letters
			}
		}
		if ar.bad {
			return 0, p.errorf(off, "truncated augmentation data for %q", aug)
		}
		r.pos = augEnd
	} else if aug != "" {
		return 0, p.errorf(off, "augmentation %q without 'z' cannot be skipped", aug)
	}
	c.instrStart, c.instrEnd = uint32(r.pos), uint32(end)
	i := uint32(len(p.t.cies))
	p.t.cies = append(p.t.cies, c)
	p.cieIndex[off] = i
	return i, nil
}

// fde parses the FDE at off. When wantLoc is set (from the header's
// table), its initial location must match.
func (p *parser) fde(off, body, end, idPos int, id uint32, loc uint64, wantLoc bool) error {
	ciePos := idPos - int(id)
	if int(id) > idPos || ciePos < 0 {
		return p.errorf(off, "CIE pointer %#x points before the section", id)
	}
	ci, err := p.cie(ciePos)
	if err != nil {
		return err
	}
	c := &p.t.cies[ci]
	r := reader{data: p.t.data[:end], pos: body}
	bases := pointerBases{section: p.t.addr}
	begin, ind, err := r.pointer(c.fdeEnc, p.t.arch.PtrSize, bases)
	if err != nil || ind {
		return p.errorf(off, "pc_begin with encoding %#x: %v", c.fdeEnc, err)
	}
	size, _, err := r.pointer(c.fdeEnc&0x0f, p.t.arch.PtrSize, bases)
	if err != nil {
		return p.errorf(off, "pc_range: %v", err)
	}
	if c.hasAugData {
		n := r.uleb()
		r.bytes(int(min(n, uint64(r.remaining())+1)))
	}
	if r.bad {
		return p.errorf(off, "truncated FDE")
	}
	if wantLoc && begin != loc {
		return &FormatError{Section: ".eh_frame_hdr", Offset: off,
			Msg: fmt.Sprintf("table says the FDE at %#x starts at %#x, it says %#x", off, loc, begin)}
	}
	if size == 0 {
		// Emitted for code that the linker discarded.
		return nil
	}
	p.t.fdes = append(p.t.fdes, fde{pcBegin: begin, pcEnd: begin + size, cie: ci,
		instrStart: uint32(r.pos), instrEnd: uint32(end), offset: uint32(off)})
	return nil
}
