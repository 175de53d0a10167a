package unwind

import (
	"encoding/binary"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/cfi"
)

// FormatError reports malformed call frame information: where in the
// section it is, and what is wrong.
type FormatError struct {
	// Section names the data, such as ".eh_frame" or ".eh_frame_hdr".
	Section string
	// Offset is the byte offset in the section.
	Offset int
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("malformed %s at offset %#x: %s", e.Section, e.Offset, e.Msg)
}

// reader decodes the primitive encodings of call frame information. It
// never panics: once a read runs past the end it sets bad and every later
// read returns zero, so callers check once after a group of reads.
type reader struct {
	data []byte
	pos  int
	bad  bool
}

func (r *reader) remaining() int { return len(r.data) - r.pos }

func (r *reader) fail() {
	r.bad = true
	r.pos = len(r.data)
}

func (r *reader) u8() uint8 {
	if r.pos >= len(r.data) {
		r.fail()
		return 0
	}
	v := r.data[r.pos]
	r.pos++
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > r.remaining() {
		r.fail()
		return nil
	}
	b := r.data[r.pos : r.pos+n]
	r.pos += n
	return b
}

func (r *reader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *reader) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		b := r.u8()
		if r.bad {
			return 0
		}
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	for {
		b := r.u8()
		if r.bad {
			return 0
		}
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			if shift < 64 && b&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

// pointerBases are the addresses an encoded pointer may be relative to.
type pointerBases struct {
	// section is the run-time (or link-time) address of data[0].
	section uint64
	// data is the DW_EH_PE_datarel base: the start of .eh_frame_hdr for
	// the header's own table. Zero when unknown.
	data uint64
}

// pointer decodes one pointer with encoding enc. An indirect pointer is
// returned as the address to load it from, with indirect set: resolving it
// needs the process's memory, which only the personality routine (never
// needed to unwind) uses.
func (r *reader) pointer(enc uint8, ptrSize int, bases pointerBases) (v uint64, indirect bool, err error) {
	if enc == cfi.PEOmit {
		return 0, false, nil
	}
	fieldAddr := bases.section + uint64(r.pos)
	if enc&0x70 == cfi.PEAligned {
		if pad := (fieldAddr % uint64(ptrSize)); pad != 0 {
			r.bytes(int(uint64(ptrSize) - pad))
		}
		fieldAddr = bases.section + uint64(r.pos)
	}
	switch enc & 0x0f {
	case cfi.PEAbsptr:
		if ptrSize == 4 {
			v = uint64(r.u32())
		} else {
			v = r.u64()
		}
	case cfi.PEULEB128:
		v = r.uleb()
	case cfi.PEUdata2:
		v = uint64(r.u16())
	case cfi.PEUdata4:
		v = uint64(r.u32())
	case cfi.PEUdata8:
		v = r.u64()
	case cfi.PESLEB128:
		v = uint64(r.sleb())
	case cfi.PESdata2:
		v = uint64(int64(int16(r.u16())))
	case cfi.PESdata4:
		v = uint64(int64(int32(r.u32())))
	case cfi.PESdata8:
		v = r.u64()
	default:
		return 0, false, fmt.Errorf("unknown pointer format %#x", enc&0x0f)
	}
	if r.bad {
		return 0, false, fmt.Errorf("pointer runs past the end")
	}
	switch enc & 0x70 {
	case cfi.PEAbsptr, cfi.PEAligned:
	case cfi.PEPCRel:
		v += fieldAddr
	case cfi.PEDataRel:
		if bases.data == 0 {
			return 0, false, fmt.Errorf("data-relative pointer without a data base")
		}
		v += bases.data
	case cfi.PETextRel, cfi.PEFuncRel:
		// No toolchain for x86-64 or AArch64 Linux emits these in
		// .eh_frame; refusing is better than guessing a base.
		return 0, false, fmt.Errorf("pointer encoding %#x (text- or function-relative) is not supported", enc)
	default:
		return 0, false, fmt.Errorf("unknown pointer application %#x", enc&0x70)
	}
	return v, enc&cfi.PEIndirect != 0, nil
}

// pointerSize is the number of bytes a pointer with encoding enc
// occupies, for the fixed-size formats; 0 for LEB128 and unknown formats.
func pointerSize(enc uint8, ptrSize int) int {
	switch enc & 0x0f {
	case cfi.PEAbsptr:
		return ptrSize
	case cfi.PEUdata2, cfi.PESdata2:
		return 2
	case cfi.PEUdata4, cfi.PESdata4:
		return 4
	case cfi.PEUdata8, cfi.PESdata8:
		return 8
	}
	return 0
}
