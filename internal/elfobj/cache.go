package elfobj

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Cache keeps object models on disk, keyed by build-id, so that a command
// that runs for milliseconds does not parse the C library's symbol tables
// and relocations every time (about 2 ms of its CPU time). An entry is
// one file: the model in a compact binary form with a CRC. A missing,
// stale or damaged entry is only a miss: the object is parsed again and
// the entry rewritten.
type Cache struct {
	// Dir holds the entries; it is created (0700) on the first store.
	Dir string
}

// cacheMagic names the entry format; change it whenever Object, Symbol
// or DynReloc gain a field, so old entries become misses.
// TestCacheRoundTrip fails when a field is not carried.
const cacheMagic = "HPELF004"

// Open returns the model of the ELF file f, from the cache when an entry
// for the same file exists, otherwise parsed with New and stored. Objects
// without a build-id are parsed and not stored.
func (c *Cache) Open(f *os.File, name string) (*Object, error) {
	key, err := cacheKey(f)
	if err != nil || key == "" {
		// Not an ELF file, or no build-id: New reports what is wrong or
		// parses it; either way nothing is cached.
		return New(f, name)
	}
	path := filepath.Join(c.Dir, key)
	if b, err := os.ReadFile(path); err == nil {
		if o, err := decodeObject(b); err == nil {
			o.Path = name
			return o, nil
		}
	}
	o, err := New(f, name)
	if err != nil {
		return nil, err
	}
	// A failure to store costs the next command a parse, nothing more.
	_ = c.store(path, o)
	return o, nil
}

func (c *Cache) store(path string, o *Object) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(encodeObject(o)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Rename is atomic: a concurrent command reads the old entry or the
	// new one, never half of one.
	return os.Rename(tmp.Name(), path)
}

// cacheKey names the entry of an ELF file: a hash of its build-id, its
// size and its ELF, program and section headers. The build-id alone is
// not enough: a stripped copy and its original share it but not their
// symbol tables. It returns "" for a file without a build-id.
func cacheKey(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", err
	}
	id, err := BuildID(ef)
	if err != nil {
		return "", nil
	}
	h := sha256.New()
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(st.Size()))
	h.Write(hdr[:])
	h.Write(id)
	ehdr := make([]byte, 64)
	if _, err := f.ReadAt(ehdr, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	h.Write(ehdr)
	for _, p := range ef.Progs {
		fmt.Fprintf(h, "p%d,%d,%d,%d,%d,%d,%d;", p.Type, p.Flags, p.Off, p.Vaddr, p.Filesz, p.Memsz, p.Align)
	}
	for _, s := range ef.Sections {
		fmt.Fprintf(h, "s%s,%d,%d,%d,%d,%d,%d,%d;", s.Name, s.Type, s.Flags, s.Addr, s.Offset, s.Size, s.Link, s.Info)
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// The entry format: cacheMagic, the string table (its length, then its
// bytes), the fields in the order encodeObject writes them, then a CRC-32
// (IEEE, whose table the standard library builds lazily) of everything
// before it. Strings are offsets into the string table, so
// that decoding makes one string and slices it. Slice lengths are written plus one,
// with 0 for nil, so that a decoded model equals a parsed one.

type encoder struct {
	b       []byte
	strs    []byte
	strSeen map[string]uint32
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) flag(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// length writes the length of a slice that may be nil.
func (e *encoder) length(n int, isNil bool) {
	if isNil {
		e.u32(0)
		return
	}
	e.u32(uint32(n) + 1)
}

func (e *encoder) bytes(b []byte) {
	e.length(len(b), b == nil)
	e.b = append(e.b, b...)
}

func (e *encoder) str(s string) {
	off, ok := e.strSeen[s]
	if !ok {
		off = uint32(len(e.strs))
		e.strs = append(e.strs, s...)
		e.strSeen[s] = off
	}
	e.u32(off)
	e.u32(uint32(len(s)))
}

func (e *encoder) segment(s Segment) {
	e.u32(uint32(s.Type))
	e.u32(uint32(s.Flags))
	for _, v := range []uint64{s.Offset, s.Vaddr, s.Filesz, s.Memsz, s.Align} {
		e.u64(v)
	}
}

func (e *encoder) symbol(s Symbol) {
	e.str(s.Name)
	e.str(s.Version)
	e.str(s.Library)
	e.flag(s.NonDefault)
	e.flag(s.Dynamic)
	e.u64(s.Value)
	e.u64(s.Size)
	e.u8(uint8(s.Type))
	e.u8(uint8(s.Bind))
	e.u8(uint8(s.Visibility))
	e.u32(uint32(s.Section))
}

func encodeObject(o *Object) []byte {
	e := &encoder{strSeen: map[string]uint32{}}
	e.u32(uint32(o.Type))
	e.u32(uint32(o.Machine))
	e.u8(uint8(o.Class))
	switch o.ByteOrder {
	case binary.LittleEndian:
		e.u8(1)
	case binary.BigEndian:
		e.u8(2)
	default:
		e.u8(0)
	}
	e.u64(o.Entry)
	e.flag(o.pie)
	e.flag(o.hasInterp)
	e.bytes(o.BuildID)
	e.str(o.Soname)
	e.length(len(o.Needed), o.Needed == nil)
	for _, n := range o.Needed {
		e.str(n)
	}
	e.length(len(o.Loads), o.Loads == nil)
	for _, l := range o.Loads {
		e.segment(l)
	}
	e.flag(o.TLS != nil)
	if o.TLS != nil {
		for _, v := range []uint64{o.TLS.Vaddr, o.TLS.Offset, o.TLS.Filesz, o.TLS.Memsz, o.TLS.Align} {
			e.u64(v)
		}
	}
	e.flag(o.GNUEHFrame != nil)
	if o.GNUEHFrame != nil {
		e.segment(*o.GNUEHFrame)
	}
	e.u64(o.EHFrame.Addr)
	e.bytes(o.EHFrame.Data)
	e.u64(o.EHFrameHdr.Addr)
	e.bytes(o.EHFrameHdr.Data)
	e.length(len(o.symbols), o.symbols == nil)
	for _, s := range o.symbols {
		e.symbol(s)
	}
	// The name index, one group per name in the order names first
	// appear, so that decoding fills one backing array.
	groups := 0
	for i, sym := range o.symbols {
		if idx := o.byName[sym.Name]; len(idx) > 0 && int(idx[0]) == i {
			groups++
		}
	}
	e.u32(uint32(groups))
	for i, sym := range o.symbols {
		idx := o.byName[sym.Name]
		if len(idx) == 0 || int(idx[0]) != i {
			continue
		}
		e.str(sym.Name)
		e.u32(uint32(len(idx)))
		for _, k := range idx {
			e.u32(uint32(k))
		}
	}
	e.length(len(o.funcs), o.funcs == nil)
	for _, i := range o.funcs {
		e.u32(uint32(i))
	}
	e.length(len(o.funcMaxEnd), o.funcMaxEnd == nil)
	for _, v := range o.funcMaxEnd {
		e.u64(v)
	}
	e.length(len(o.relocs), o.relocs == nil)
	for _, r := range o.relocs {
		e.u64(r.Offset)
		e.u32(r.Type)
		e.u8(uint8(r.Kind))
		e.symbol(r.Symbol)
		e.u64(uint64(r.Addend))
		e.str(r.Section)
	}
	out := make([]byte, 0, len(cacheMagic)+4+len(e.strs)+len(e.b)+4)
	out = append(out, cacheMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(e.strs)))
	out = append(out, e.strs...)
	out = append(out, e.b...)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
}

var errBadEntry = errors.New("damaged cache entry")

type decoder struct {
	b    []byte
	strs string
	err  error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = errBadEntry
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) flag() bool { return d.u8() != 0 }

// length reads a slice length: -1 for nil. A length longer than what is
// left cannot be right, whatever the element size.
func (d *decoder) length() int {
	n := d.u32()
	if n == 0 {
		return -1
	}
	if int(n-1) > len(d.b) {
		d.err = errBadEntry
		return -1
	}
	return int(n - 1)
}

func (d *decoder) bytes() []byte {
	n := d.length()
	if n < 0 {
		return nil
	}
	return d.take(n)
}

func (d *decoder) str() string {
	off, n := d.u32(), d.u32()
	if uint64(off)+uint64(n) > uint64(len(d.strs)) {
		d.err = errBadEntry
		return ""
	}
	return d.strs[off : off+n]
}

func (d *decoder) segment() Segment {
	s := Segment{Type: elf.ProgType(d.u32()), Flags: elf.ProgFlag(d.u32())}
	s.Offset, s.Vaddr, s.Filesz, s.Memsz, s.Align = d.u64(), d.u64(), d.u64(), d.u64(), d.u64()
	return s
}

func (d *decoder) symbol() Symbol {
	s := Symbol{Name: d.str(), Version: d.str(), Library: d.str(), NonDefault: d.flag(), Dynamic: d.flag()}
	s.Value, s.Size = d.u64(), d.u64()
	s.Type, s.Bind, s.Visibility = elf.SymType(d.u8()), elf.SymBind(d.u8()), elf.SymVis(d.u8())
	s.Section = elf.SectionIndex(d.u32())
	return s
}

func decodeObject(b []byte) (*Object, error) {
	if len(b) < len(cacheMagic)+4 || string(b[:len(cacheMagic)]) != cacheMagic {
		return nil, errBadEntry
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errBadEntry
	}
	d := &decoder{b: body[len(cacheMagic):]}
	n := int(d.u32())
	d.strs = string(d.take(n))
	if d.err != nil {
		return nil, errBadEntry
	}

	o := &Object{Type: elf.Type(d.u32()), Machine: elf.Machine(d.u32()), Class: elf.Class(d.u8())}
	switch d.u8() {
	case 1:
		o.ByteOrder = binary.LittleEndian
	case 2:
		o.ByteOrder = binary.BigEndian
	}
	o.Entry = d.u64()
	o.pie, o.hasInterp = d.flag(), d.flag()
	o.BuildID = d.bytes()
	o.Soname = d.str()
	if n := d.length(); n >= 0 {
		o.Needed = make([]string, n)
		for i := range o.Needed {
			o.Needed[i] = d.str()
		}
	}
	if n := d.length(); n >= 0 {
		o.Loads = make([]Segment, n)
		for i := range o.Loads {
			o.Loads[i] = d.segment()
		}
	}
	if d.flag() {
		o.TLS = &TLS{Vaddr: d.u64(), Offset: d.u64(), Filesz: d.u64(), Memsz: d.u64(), Align: d.u64()}
	}
	if d.flag() {
		s := d.segment()
		o.GNUEHFrame = &s
	}
	o.EHFrame = Blob{Addr: d.u64(), Data: d.bytes()}
	o.EHFrameHdr = Blob{Addr: d.u64(), Data: d.bytes()}
	if n := d.length(); n >= 0 {
		o.symbols = make([]Symbol, n)
		for i := range o.symbols {
			o.symbols[i] = d.symbol()
		}
	}
	groups := d.u32()
	if uint64(groups) > uint64(len(o.symbols)) {
		return nil, errBadEntry
	}
	o.byName = make(map[string][]int32, groups)
	backing := make([]int32, 0, len(o.symbols))
	for g := uint32(0); g < groups && d.err == nil; g++ {
		name, n := d.str(), d.u32()
		if uint64(n) > uint64(cap(backing)-len(backing)) {
			return nil, errBadEntry
		}
		start := len(backing)
		for j := uint32(0); j < n; j++ {
			k := d.u32()
			// Each symbol is listed once, under its own name, in
			// ascending order: what indexSymbols builds.
			if k >= uint32(len(o.symbols)) || o.symbols[k].Name != name || j > 0 && int32(k) <= backing[len(backing)-1] {
				return nil, errBadEntry
			}
			backing = append(backing, int32(k))
		}
		if _, dup := o.byName[name]; dup {
			return nil, errBadEntry
		}
		o.byName[name] = backing[start:len(backing):len(backing)]
	}
	if d.err == nil && len(backing) != len(o.symbols) {
		return nil, errBadEntry
	}
	if n := d.length(); n >= 0 {
		o.funcs = make([]int32, n)
		for i := range o.funcs {
			k := d.u32()
			if k >= uint32(len(o.symbols)) || k > math.MaxInt32 {
				return nil, errBadEntry
			}
			o.funcs[i] = int32(k)
		}
	}
	if n := d.length(); n >= 0 {
		o.funcMaxEnd = make([]uint64, n)
		for i := range o.funcMaxEnd {
			o.funcMaxEnd[i] = d.u64()
			// A running maximum never falls; FuncAt relies on it.
			if i > 0 && o.funcMaxEnd[i] < o.funcMaxEnd[i-1] {
				return nil, errBadEntry
			}
		}
	}
	if n := d.length(); n >= 0 {
		o.relocs = make([]DynReloc, n)
		for i := range o.relocs {
			r := &o.relocs[i]
			r.Offset, r.Type, r.Kind = d.u64(), d.u32(), SlotKind(d.u8())
			r.Symbol = d.symbol()
			r.Addend = int64(d.u64())
			r.Section = d.str()
		}
	}
	if d.err != nil || len(d.b) != 0 || len(o.funcMaxEnd) != len(o.funcs) {
		return nil, errBadEntry
	}
	return o, nil
}
