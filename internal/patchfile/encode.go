package patchfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

var le = binary.LittleEndian

// Encode validates p and returns its encoding. It sets p.Checksum,
// p.FormatMajor and p.FormatMinor to what it wrote.
func Encode(p *Patch) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var body encoder
	records := 0
	for _, r := range []struct {
		tag    string
		encode func(*encoder, *Patch)
	}{
		{tagMeta, encodeMeta},
		{tagSections, encodeSections},
		{tagSymbols, encodeSymbols},
		{tagRelocs, encodeRelocs},
		{tagFuncs, encodeFuncs},
	} {
		body.record(r.tag, recordCritical, func(e *encoder) { r.encode(e, p) })
		records++
	}

	var out encoder
	out.bytes([]byte(Magic))
	out.u16(FormatMajor)
	out.u16(FormatMinor)
	out.u16(uint16(p.Arch))
	out.u16(0)
	out.u64(uint64(body.buf.Len()))
	out.u32(uint32(records))
	out.u32(0)
	out.bytes(body.buf.Bytes())

	sum := sha256.Sum256(out.buf.Bytes())
	out.record(tagChecksum, recordCritical, func(e *encoder) {
		e.u16(checksumSHA256)
		e.bytes(sum[:])
	})
	signedLen := out.len()
	for _, s := range p.Signatures {
		encodeSignature(&out, s)
	}
	b := out.buf.Bytes()
	p.signed = b[:signedLen:signedLen]
	p.Checksum = sum
	p.FormatMajor, p.FormatMinor = FormatMajor, FormatMinor
	return b, nil
}

func encodeSignature(out *encoder, s Signature) {
	out.record(tagSign, 0, func(e *encoder) {
		e.u16(s.Algorithm)
		e.str(s.KeyID)
		e.u32(uint32(len(s.Sig)))
		e.bytes(s.Sig)
	})
}

// AppendSignature returns the encoded patch file b with the signature s
// added after its last record. Nothing before it changes, so the checksum
// and the signatures already there stay valid, and a reader that does not
// verify signatures reads the file as before.
func AppendSignature(b []byte, s Signature) ([]byte, error) {
	if _, err := Decode(b); err != nil {
		return nil, err
	}
	if len(s.KeyID) > maxString || len(s.Sig) > maxString {
		return nil, fmt.Errorf("signature record too large")
	}
	var e encoder
	e.bytes(b)
	encodeSignature(&e, s)
	return e.buf.Bytes(), nil
}

// Write encodes p to w.
func Write(w io.Writer, p *Patch) error {
	b, err := Encode(p)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// WriteFile encodes p into path. It writes a temporary file in the same
// folder and renames it, so that a reader never sees half a patch.
func WriteFile(path string, p *Patch) error {
	b, err := Encode(p)
	if err != nil {
		return fmt.Errorf("write patch %s: %w", path, err)
	}
	return WriteBytes(path, b, 0o644)
}

// WriteBytes replaces the file at path with b, given mode, through a
// temporary file in the same folder and a rename: a reader sees the old
// file or the new one, never half of one.
func WriteBytes(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write patch %s: %w", path, err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), mode)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write patch %s: %w", path, werr)
	}
	return nil
}

func encodeMeta(e *encoder, p *Patch) {
	e.u32(uint32(len(p.BuildID)))
	e.bytes(p.BuildID)
	e.str(p.Target)
	e.str(p.ID)
	e.u32(p.Level)
	var created int64
	if !p.Created.IsZero() {
		created = p.Created.UnixNano()
	}
	e.u64(uint64(created))
	e.str(p.ToolVersion)
	e.str(p.Description)
	e.u32(uint32(len(p.Labels)))
	for _, l := range p.Labels {
		e.str(l)
	}
}

func encodeSections(e *encoder, p *Patch) {
	e.u32(uint32(len(p.Sections)))
	for _, s := range p.Sections {
		e.str(s.Name)
		e.u8(uint8(s.Kind))
		var flags uint8
		if s.NoBits {
			flags |= 1
		}
		e.u8(flags)
		e.u16(0)
		e.u64(s.Align)
		e.u64(s.Size)
		if !s.NoBits {
			e.bytes(s.Data)
		}
	}
}

func encodeSymbols(e *encoder, p *Patch) {
	e.u32(uint32(len(p.Symbols)))
	for _, s := range p.Symbols {
		e.str(s.Name)
		e.u8(uint8(s.Kind))
		e.u8(uint8(s.Type))
		e.u16(0)
		e.u32(s.Section)
		e.u64(s.Value)
		e.u64(s.Size)
		e.str(s.Version)
	}
}

func encodeRelocs(e *encoder, p *Patch) {
	e.u32(uint32(len(p.Relocs)))
	for _, r := range p.Relocs {
		e.u32(r.Section)
		e.u32(r.Type)
		e.u64(r.Offset)
		e.u32(r.Symbol)
		e.u32(0)
		e.u64(uint64(r.Addend))
	}
}

func encodeFuncs(e *encoder, p *Patch) {
	e.u32(uint32(len(p.Funcs)))
	for _, f := range p.Funcs {
		e.str(f.Name)
		e.u64(f.OldOffset)
		e.u64(f.OldSize)
		e.u32(f.NewSymbol)
		e.u32(uint32(f.Flags))
		e.u64(f.NewSize)
	}
}

type encoder struct{ buf bytes.Buffer }

func (e *encoder) u8(v uint8)     { e.buf.WriteByte(v) }
func (e *encoder) u16(v uint16)   { e.buf.Write(le.AppendUint16(nil, v)) }
func (e *encoder) u32(v uint32)   { e.buf.Write(le.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64)   { e.buf.Write(le.AppendUint64(nil, v)) }
func (e *encoder) bytes(b []byte) { e.buf.Write(b) }
func (e *encoder) str(s string)   { e.u32(uint32(len(s))); e.buf.WriteString(s) }
func (e *encoder) pad(n int)      { e.buf.Write(make([]byte, n)) }
func (e *encoder) len() int       { return e.buf.Len() }
func (e *encoder) patch64(at int, v uint64) {
	le.PutUint64(e.buf.Bytes()[at:], v)
}

// record writes a record header, the payload that fill writes, and the
// padding to the next 8-byte boundary.
func (e *encoder) record(tag string, flags uint16, fill func(*encoder)) {
	e.bytes([]byte(tag))
	e.u16(flags)
	e.u16(0)
	lenAt := e.len()
	e.u64(0)
	start := e.len()
	fill(e)
	n := e.len() - start
	e.patch64(lenAt, uint64(n))
	e.pad(padding(n))
}

func padding(n int) int { return (8 - n%8) % 8 }
