package patchfile

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// samplePatch is a patch as extraction would produce it for a small
// program: one replaced function that calls puts and reads a static.
func samplePatch() *Patch {
	return &Patch{
		Arch:        elf.EM_X86_64,
		BuildID:     []byte{0x5e, 0x1f, 0x2a, 0x9c, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		Target:      "/usr/sbin/exampled",
		ID:          "CVE-2024-1234",
		Level:       2,
		Description: "Bound the header length before copying it.",
		Labels:      []string{"CVE-2024-1234"},
		Created:     time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
		ToolVersion: "0.1.0-test",
		Sections: []Section{
			{Name: ".hotpatch.text", Kind: SectionText, Align: 16, Size: 16,
				Data: []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x8d, 0x3d, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0}},
			{Name: ".hotpatch.rodata", Kind: SectionROData, Align: 1, Size: 6, Data: []byte("fixed\x00")},
			{Name: ".hotpatch.data", Kind: SectionData, Align: 8, Size: 8, Data: make([]byte, 8)},
			{Name: ".hotpatch.bss", Kind: SectionData, NoBits: true, Align: 4, Size: 4},
		},
		Symbols: []Symbol{
			{},
			{Name: "handle_request.hotpatch", Kind: SymPatch, Type: elf.STT_FUNC, Section: 0, Value: 0, Size: 16},
			{Name: ".hotpatch.rodata", Kind: SymPatch, Type: elf.STT_SECTION, Section: 1},
			{Name: "puts", Kind: SymExternal, Type: elf.STT_FUNC, Version: "GLIBC_2.2.5"},
			{Name: "requests.0", Kind: SymTarget, Type: elf.STT_OBJECT, Value: 0x4030, Size: 4},
			{Name: "new_counter", Kind: SymNew, Type: elf.STT_OBJECT, Section: 3, Size: 4},
			{Name: "tls_depth", Kind: SymTLS, Type: elf.STT_TLS, Value: 8, Size: 4},
		},
		Relocs: []Reloc{
			{Section: 0, Offset: 7, Type: uint32(elf.R_X86_64_PC32), Symbol: 2, Addend: -4},
			{Section: 0, Offset: 12, Type: uint32(elf.R_X86_64_PLT32), Symbol: 3, Addend: -4},
			{Section: 2, Offset: 0, Type: uint32(elf.R_X86_64_64), Symbol: 4, Addend: 0},
		},
		Funcs: []Func{
			{Name: "handle_request", OldOffset: 0x1189, OldSize: 0x5a, NewSymbol: 1, NewSize: 16},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	p := samplePatch()
	p.Signatures = []Signature{{Algorithm: 1, KeyID: "test-key", Sig: bytes.Repeat([]byte{0xab}, 64)}}
	b, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip changed the patch:\nwrote %+v\nread  %+v", p, q)
	}
	if q.Checksum != sha256.Sum256(b[:preambleSize+int(le.Uint64(b[16:]))]) {
		t.Fatal("checksum does not cover the preamble and body")
	}
}

func TestWriteFileAndReadFile(t *testing.T) {
	p := samplePatch()
	path := filepath.Join(t.TempDir(), p.FileName())
	if err := WriteFile(path, p); err != nil {
		t.Fatal(err)
	}
	q, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if q.ID != p.ID || q.BuildIDString() != "5e1f2a9c00112233445566778899aabbccddeeff" {
		t.Fatalf("read back id %q build-id %s", q.ID, q.BuildIDString())
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("WriteFile left temporary files: %v", ents)
	}
}

// TestGoldenEncoding pins the encoding byte for byte, so that a change to
// the format cannot slip in without a version decision and a new golden.
func TestGoldenEncoding(t *testing.T) {
	b, err := Encode(samplePatch())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "sample.hpatch")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding differs from %s; if the format changed on purpose, bump the version and run go test -update", golden)
	}
}

func TestEveryFlippedByteIsRefused(t *testing.T) {
	b, err := Encode(samplePatch())
	if err != nil {
		t.Fatal(err)
	}
	sumEnd := preambleSize + int(le.Uint64(b[16:])) + recordHeaderSize + 34
	for i := 0; i < sumEnd; i++ {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		_, err := Decode(c)
		if err == nil {
			t.Fatalf("flipping byte %d was not detected", i)
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("byte %d: error %v is not a *FormatError", i, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("byte %d: error is not one line: %q", i, err)
		}
	}
	// A flip inside the body is reported as a checksum mismatch, at the
	// checksum record.
	c := append([]byte(nil), b...)
	c[preambleSize+40] ^= 0x80
	_, err = Decode(c)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("body flip: got %v, want a checksum mismatch", err)
	}
}

func TestTruncatedFilesAreRefused(t *testing.T) {
	b, err := Encode(samplePatch())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		if _, err := Decode(b[:n]); err == nil {
			t.Fatalf("file truncated to %d of %d bytes was accepted", n, len(b))
		}
	}
	// Without signatures the checksum record ends the file, so every
	// truncation must be caught; with one, a cut signature must be too.
	_, err = Decode(b[:len(b)-1])
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut by one byte: got %v, want ErrTruncated", err)
	}
}

func TestNotAPatchFile(t *testing.T) {
	_, err := Decode([]byte("\x7fELF\x02\x01\x01\x00 this is an ELF file, not a patch"))
	if !errors.Is(err, ErrNotPatchFile) {
		t.Fatalf("got %v, want ErrNotPatchFile", err)
	}
}

// rewrite edits an encoded file: it hands the body to edit, then fixes the
// preamble's length and count and the checksum, as a future writer would.
func rewrite(t *testing.T, b []byte, minor uint16, edit func(body []byte) ([]byte, int)) []byte {
	t.Helper()
	bodyLen := int(le.Uint64(b[16:]))
	body, extra := edit(append([]byte(nil), b[preambleSize:preambleSize+bodyLen]...))
	var e encoder
	e.bytes(b[:8])
	e.u16(le.Uint16(b[8:]))
	e.u16(minor)
	e.bytes(b[12:16])
	e.u64(uint64(len(body)))
	e.u32(le.Uint32(b[24:]) + uint32(extra))
	e.u32(0)
	e.bytes(body)
	sum := sha256.Sum256(e.buf.Bytes())
	e.record(tagChecksum, recordCritical, func(e *encoder) { e.u16(checksumSHA256); e.bytes(sum[:]) })
	return e.buf.Bytes()
}

func appendRecord(body []byte, tag string, flags uint16, payload []byte) []byte {
	var e encoder
	e.bytes(body)
	e.record(tag, flags, func(e *encoder) { e.bytes(payload) })
	return e.buf.Bytes()
}

func TestVersionRules(t *testing.T) {
	b, err := Encode(samplePatch())
	if err != nil {
		t.Fatal(err)
	}

	// A newer minor version may add records; an optional one is skipped.
	newer := rewrite(t, b, FormatMinor+1, func(body []byte) ([]byte, int) {
		return appendRecord(body, "XNEW", 0, []byte("future data")), 1
	})
	p, err := Decode(newer)
	if err != nil {
		t.Fatalf("newer minor with an optional record: %v", err)
	}
	if p.FormatMinor != FormatMinor+1 || p.ID != "CVE-2024-1234" {
		t.Fatalf("read minor %d id %q", p.FormatMinor, p.ID)
	}

	// A record marked required that this reader does not know is refused
	// with advice to upgrade.
	required := rewrite(t, b, FormatMinor+1, func(body []byte) ([]byte, int) {
		return appendRecord(body, "XREQ", recordCritical, []byte{1, 2, 3}), 1
	})
	_, err = Decode(required)
	if err == nil || !strings.Contains(err.Error(), "upgrade hotpatch") || !strings.Contains(err.Error(), "XREQ") {
		t.Fatalf("unknown required record: got %v", err)
	}

	// A newer major version is refused before anything else is read.
	major := append([]byte(nil), b...)
	le.PutUint16(major[8:], FormatMajor+1)
	_, err = Decode(major)
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("newer major: got %v, want ErrVersion", err)
	}
}

func TestMissingRecordIsRefused(t *testing.T) {
	b, err := Encode(samplePatch())
	if err != nil {
		t.Fatal(err)
	}
	noFuncs := rewrite(t, b, FormatMinor, func(body []byte) ([]byte, int) {
		i := bytes.Index(body, []byte(tagFuncs))
		return body[:i], -1
	})
	_, err = Decode(noFuncs)
	if err == nil || !strings.Contains(err.Error(), "FUNC is missing") {
		t.Fatalf("missing FUNC: got %v", err)
	}
}

func TestValidateRefusesInconsistentPatches(t *testing.T) {
	cases := map[string]func(p *Patch){
		"no build-id":           func(p *Patch) { p.BuildID = nil },
		"bad section index":     func(p *Patch) { p.Relocs[0].Section = 9 },
		"offset past section":   func(p *Patch) { p.Relocs[0].Offset = 16 },
		"bad symbol index":      func(p *Patch) { p.Relocs[1].Symbol = 99 },
		"replacement in target": func(p *Patch) { p.Funcs[0].NewSymbol = 4 },
		"alignment":             func(p *Patch) { p.Sections[0].Align = 3 },
		"size mismatch":         func(p *Patch) { p.Sections[1].Size = 7 },
		"null symbol":           func(p *Patch) { p.Symbols[0].Kind = SymPatch },
		"reloc in nobits":       func(p *Patch) { p.Relocs[2].Section = 3 },
	}
	for name, mutate := range cases {
		p := samplePatch()
		mutate(p)
		if _, err := Encode(p); err == nil {
			t.Errorf("%s: Encode accepted an invalid patch", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, err := Encode(samplePatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, false)
	f.Add(b, true)
	if golden, err := os.ReadFile(filepath.Join("testdata", "sample.hpatch")); err == nil {
		f.Add(golden, true)
	}
	empty := &Patch{Arch: elf.EM_X86_64, BuildID: []byte{1}, ID: "x", Symbols: []Symbol{{}}}
	if eb, err := Encode(empty); err == nil {
		f.Add(eb, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, fixChecksum bool) {
		// Fixing the checksum lets the fuzzer past it into the records.
		if fixChecksum && len(data) >= preambleSize {
			if bodyLen := le.Uint64(data[16:]); bodyLen <= uint64(len(data)-preambleSize) {
				end := preambleSize + int(bodyLen)
				if len(data)-end >= recordHeaderSize+34 && string(data[end:end+4]) == tagChecksum {
					sum := sha256.Sum256(data[:end])
					copy(data[end+recordHeaderSize+2:], sum[:])
				}
			}
		}
		p, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode again and decode to the same.
		again, err := Encode(p)
		if err != nil {
			t.Fatalf("decoded patch does not encode: %v", err)
		}
		q, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded patch does not decode: %v", err)
		}
		p.Checksum, q.Checksum = [32]byte{}, [32]byte{}
		p.FormatMinor, q.FormatMinor = 0, 0
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("decode/encode/decode changed the patch")
		}
	})
}
