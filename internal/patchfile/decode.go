package patchfile

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"time"
)

// ReadFile reads and checks the patch file at path.
func ReadFile(path string) (*Patch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read patch: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read patch %s: %w", path, err)
	}
	p, err := Read(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read patch %s: %w", path, err)
	}
	return p, nil
}

// Read reads a patch file of the given size from r.
func Read(r io.ReaderAt, size int64) (*Patch, error) {
	if size < 0 || size > maxFileLen {
		return nil, &FormatError{Msg: fmt.Sprintf("file size %d is out of range", size)}
	}
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return Decode(b)
}

// Decode checks and decodes an encoded patch file. It never panics: a
// malformed file yields a *FormatError (wrapping ErrNotPatchFile,
// ErrVersion, ErrChecksum or ErrTruncated where one applies) that carries
// the offset of the fault.
func Decode(b []byte) (*Patch, error) {
	p, bodyEnd, err := decodePreamble(b)
	if err != nil {
		return nil, err
	}
	if err := checkChecksum(b, bodyEnd, p); err != nil {
		return nil, err
	}
	if err := decodeBody(b, p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, &FormatError{Offset: preambleSize, Msg: "inconsistent content", Err: err}
	}
	return p, nil
}

func decodePreamble(b []byte) (*Patch, int, error) {
	if len(b) < len(Magic) || !bytes.Equal(b[:len(Magic)], []byte(Magic)) {
		return nil, 0, &FormatError{Offset: 0, Err: ErrNotPatchFile}
	}
	if len(b) < preambleSize {
		return nil, 0, &FormatError{Offset: int64(len(b)), Msg: "file ends inside the preamble", Err: ErrTruncated}
	}
	d := decoder{b: b, off: len(Magic)}
	p := &Patch{}
	p.FormatMajor = d.u16()
	p.FormatMinor = d.u16()
	if p.FormatMajor != FormatMajor {
		return nil, 0, &FormatError{Offset: 8, Err: ErrVersion, Msg: fmt.Sprintf(
			"file format %d.%d, this hotpatch reads %d.x; use a hotpatch release that reads format %d",
			p.FormatMajor, p.FormatMinor, FormatMajor, p.FormatMajor)}
	}
	p.Arch = elf.Machine(d.u16())
	d.u16() // flags, none defined in 1.x
	bodyLen := d.u64()
	d.u32() // record count: a cross-check only, the walk below is authoritative
	d.u32()
	if bodyLen > uint64(len(b)-preambleSize) {
		return nil, 0, &FormatError{Offset: 16, Err: ErrTruncated,
			Msg: fmt.Sprintf("body of %d bytes does not fit in a file of %d bytes", bodyLen, len(b))}
	}
	return p, preambleSize + int(bodyLen), nil
}

// checkChecksum verifies the CSUM record that follows the body, and reads
// the signature blocks after it.
func checkChecksum(b []byte, bodyEnd int, p *Patch) error {
	d := decoder{b: b, off: bodyEnd}
	tag, _, payload, err := d.record()
	if err != nil {
		return err
	}
	if tag != tagChecksum {
		return &FormatError{Offset: int64(bodyEnd), Msg: fmt.Sprintf("expected the %s record after the body, found %q", tagChecksum, tag)}
	}
	// The checksum cannot cover its own record, so its header and padding
	// must be exactly what the writer writes.
	if le.Uint16(b[bodyEnd+4:]) != recordCritical || le.Uint16(b[bodyEnd+6:]) != 0 || len(payload.b) != 34 ||
		!bytes.Equal(b[payload.base+34:d.off], make([]byte, d.off-payload.base-34)) {
		return &FormatError{Offset: int64(bodyEnd), Record: tagChecksum, Err: ErrChecksum, Msg: "malformed checksum record"}
	}
	pd := decoder{b: payload.b, off: 0, base: payload.base, tag: tagChecksum}
	alg := pd.u16()
	sum := pd.take(32)
	if pd.err != nil {
		return pd.err
	}
	if alg != checksumSHA256 {
		return &FormatError{Offset: int64(payload.base), Record: tagChecksum, Msg: fmt.Sprintf("unknown checksum algorithm %d", alg)}
	}
	want := sha256.Sum256(b[:bodyEnd])
	if !bytes.Equal(sum, want[:]) {
		return &FormatError{Offset: int64(payload.base + 2), Record: tagChecksum, Err: ErrChecksum,
			Msg: "the file is corrupt or was modified after it was written; rebuild or copy it again"}
	}
	copy(p.Checksum[:], sum)
	p.signed = b[:d.off]
	for d.off < len(b) {
		at := d.off
		tag, flags, payload, err := d.record()
		if err != nil {
			return err
		}
		if tag != tagSign {
			if flags&recordCritical != 0 {
				return &FormatError{Offset: int64(at), Msg: fmt.Sprintf("unknown required record %q after the checksum; use a newer hotpatch", tag)}
			}
			continue
		}
		sd := decoder{b: payload.b, base: payload.base, tag: tagSign}
		var s Signature
		s.Algorithm = sd.u16()
		s.KeyID = sd.str()
		s.Sig = sd.blob32()
		if sd.err != nil {
			return sd.err
		}
		p.Signatures = append(p.Signatures, s)
	}
	return nil
}

func decodeBody(b []byte, p *Patch) error {
	bodyEnd := preambleSize + int(le.Uint64(b[16:]))
	d := decoder{b: b[:bodyEnd], off: preambleSize}
	seen := map[string]bool{}
	for d.off < bodyEnd {
		at := d.off
		tag, flags, payload, err := d.record()
		if err != nil {
			return err
		}
		if seen[tag] {
			return &FormatError{Offset: int64(at), Record: tag, Msg: "record appears twice"}
		}
		seen[tag] = true
		pd := &decoder{b: payload.b, base: payload.base, tag: tag}
		switch tag {
		case tagMeta:
			decodeMeta(pd, p)
		case tagSections:
			decodeSections(pd, p)
		case tagSymbols:
			decodeSymbols(pd, p)
		case tagRelocs:
			decodeRelocs(pd, p)
		case tagFuncs:
			decodeFuncs(pd, p)
		default:
			if flags&recordCritical != 0 {
				return &FormatError{Offset: int64(at), Record: tag, Msg: fmt.Sprintf(
					"record is required by format %d.%d but unknown to this hotpatch (format %d.%d); upgrade hotpatch",
					p.FormatMajor, p.FormatMinor, FormatMajor, FormatMinor)}
			}
			continue
		}
		if pd.err != nil {
			return pd.err
		}
		if pd.off != len(pd.b) {
			return &FormatError{Offset: int64(pd.base + pd.off), Record: tag,
				Msg: fmt.Sprintf("%d bytes left over after the last field", len(pd.b)-pd.off)}
		}
	}
	for _, tag := range []string{tagMeta, tagSections, tagSymbols, tagRelocs, tagFuncs} {
		if !seen[tag] {
			return &FormatError{Offset: int64(bodyEnd), Msg: fmt.Sprintf("required record %s is missing", tag)}
		}
	}
	return nil
}

func decodeMeta(d *decoder, p *Patch) {
	p.BuildID = d.blob32()
	p.Target = d.str()
	p.ID = d.str()
	p.Level = d.u32()
	if ns := int64(d.u64()); ns != 0 {
		p.Created = time.Unix(0, ns).UTC()
	}
	p.ToolVersion = d.str()
	p.Description = d.str()
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		p.Labels = append(p.Labels, d.str())
	}
}

func decodeSections(d *decoder, p *Patch) {
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		var s Section
		s.Name = d.str()
		s.Kind = SectionKind(d.u8())
		flags := d.u8()
		d.u16()
		s.NoBits = flags&1 != 0
		s.Align = d.u64()
		at := d.base + d.off
		s.Size = d.u64()
		if !s.NoBits {
			if s.Size > uint64(len(d.b)-d.off) {
				d.fail(at, fmt.Sprintf("section %q claims %d bytes but the record has %d left", s.Name, s.Size, len(d.b)-d.off), ErrTruncated)
				return
			}
			s.Data = append([]byte(nil), d.take(int(s.Size))...)
		}
		p.Sections = append(p.Sections, s)
	}
}

func decodeSymbols(d *decoder, p *Patch) {
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		var s Symbol
		s.Name = d.str()
		s.Kind = SymbolKind(d.u8())
		s.Type = elf.SymType(d.u8())
		d.u16()
		s.Section = d.u32()
		s.Value = d.u64()
		s.Size = d.u64()
		s.Version = d.str()
		p.Symbols = append(p.Symbols, s)
	}
}

func decodeRelocs(d *decoder, p *Patch) {
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		var r Reloc
		r.Section = d.u32()
		r.Type = d.u32()
		r.Offset = d.u64()
		r.Symbol = d.u32()
		d.u32()
		r.Addend = int64(d.u64())
		p.Relocs = append(p.Relocs, r)
	}
}

func decodeFuncs(d *decoder, p *Patch) {
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		var f Func
		f.Name = d.str()
		f.OldOffset = d.u64()
		f.OldSize = d.u64()
		f.NewSymbol = d.u32()
		f.Flags = FuncFlags(d.u32())
		f.NewSize = d.u64()
		p.Funcs = append(p.Funcs, f)
	}
}

// decoder reads little-endian fields from b. The first failure sticks in
// err and every later read returns zero values, so that callers check once.
type decoder struct {
	b    []byte
	off  int
	base int // offset of b[0] in the file, for messages
	tag  string
	err  error
}

func (d *decoder) fail(at int, msg string, err error) {
	if d.err == nil {
		d.err = &FormatError{Offset: int64(at), Record: d.tag, Msg: msg, Err: err}
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(d.base+d.off, fmt.Sprintf("need %d bytes, %d left", n, len(d.b)-d.off), ErrTruncated)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return le.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return le.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return le.Uint64(v)
	}
	return 0
}

func (d *decoder) blob32() []byte {
	at := d.base + d.off
	n := d.u32()
	if n > maxString {
		d.fail(at, fmt.Sprintf("field of %d bytes exceeds the limit of %d", n, maxString), nil)
		return nil
	}
	return append([]byte(nil), d.take(int(n))...)
}

func (d *decoder) str() string { return string(d.blob32()) }

// count reads an element count and bounds it by what the remaining bytes
// could possibly hold, so that a corrupt count cannot make us allocate.
func (d *decoder) count() int {
	at := d.base + d.off
	n := d.u32()
	if n > maxCount || int(n) > len(d.b)-d.off {
		d.fail(at, fmt.Sprintf("count %d is larger than the record can hold", n), nil)
		return 0
	}
	return int(n)
}

// payload is a record's content and its offset in the file.
type payload struct {
	b    []byte
	base int
}

// record reads one record header and its payload, and skips the padding.
func (d *decoder) record() (tag string, flags uint16, p payload, err error) {
	at := d.off
	h := d.take(recordHeaderSize)
	if d.err != nil {
		return "", 0, payload{}, &FormatError{Offset: int64(at), Msg: "file ends inside a record header", Err: ErrTruncated}
	}
	tag = string(h[0:4])
	flags = le.Uint16(h[4:])
	n := le.Uint64(h[8:])
	if n > uint64(len(d.b)-d.off) {
		return "", 0, payload{}, &FormatError{Offset: int64(at), Record: printableTag(tag), Err: ErrTruncated,
			Msg: fmt.Sprintf("record of %d bytes runs past the end (%d bytes left)", n, len(d.b)-d.off)}
	}
	p = payload{b: d.b[d.off : d.off+int(n)], base: d.off}
	d.off += int(n)
	pad := padding(int(n))
	if pad > len(d.b)-d.off {
		return "", 0, payload{}, &FormatError{Offset: int64(d.off), Record: printableTag(tag), Err: ErrTruncated, Msg: "file ends inside record padding"}
	}
	d.off += pad
	return printableTag(tag), flags, p, nil
}

func printableTag(tag string) string {
	for i := 0; i < len(tag); i++ {
		if tag[i] < 0x20 || tag[i] > 0x7e {
			return fmt.Sprintf("%q", tag)
		}
	}
	return tag
}
