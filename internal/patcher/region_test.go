package patcher

import (
	"bytes"
	"testing"
)

func sampleHeader() *regionHeader {
	return &regionHeader{ID: "CVE-2024-1", Level: 3, BuildID: "abcd", Target: "/usr/bin/x", Bias: 0x555500000000,
		Base: 0x555400000000, Size: 0x4000, Seq: 7, AppliedAt: "2026-01-02T03:04:05Z", PauseUS: 150,
		Parts:     []regionPart{{Name: "header", Off: 0, Size: 0x1000, Prot: "r--"}, {Name: "text", Off: 0x1000, Size: 0x1000, Prot: "r-x"}},
		TextStart: 0x555400001000, TextEnd: 0x555400001040,
		Funcs: []regionFunc{{Name: "f", Old: 0x555500001000, OldSize: 20, New: 0x555400001000, NewSize: 30,
			Saved: []byte{0x55, 0x48, 0x89, 0xe5, 0x90}, Prev: 0x555300000000}}}
}

func TestRegionHeaderRoundTrip(t *testing.T) {
	h := sampleHeader()
	b, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRegionHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.encode()
	if !bytes.Equal(again, b) {
		t.Fatalf("round trip differs:\n%s\n%s", b[regionPrefixSize:], again[regionPrefixSize:])
	}
	// Any flipped byte of the document is caught by the checksum.
	bad := append([]byte(nil), b...)
	bad[len(bad)-3] ^= 1
	if _, err := decodeRegionHeader(bad); err == nil {
		t.Fatal("corrupted header accepted")
	}
	if _, err := decodeRegionHeader(b[:len(b)-1]); err == nil {
		t.Fatal("truncated header accepted")
	}
	if _, err := decodeRegionPrefix(make([]byte, 64)); err != errNotRegion {
		t.Fatalf("zero page: %v", err)
	}
}

func FuzzDecodeRegionHeader(f *testing.F) {
	b, err := sampleHeader().encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:regionPrefixSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := decodeRegionHeader(in)
		if err != nil {
			return
		}
		// Whatever decodes encodes again and decodes to the same.
		out, err := h.encode()
		if err != nil {
			t.Fatal(err)
		}
		h2, err := decodeRegionHeader(out)
		if err != nil {
			t.Fatalf("re-encoded header does not decode: %v", err)
		}
		out2, _ := h2.encode()
		if !bytes.Equal(out, out2) {
			t.Fatal("encoding is not stable")
		}
	})
}

func TestProvisionalHeader(t *testing.T) {
	h := sampleHeader()
	p := h.provisional()
	if !p.Incomplete || p.Funcs != nil || h.Incomplete || len(h.Funcs) != 1 {
		t.Fatalf("provisional %+v from %+v", p, h)
	}
	b, err := p.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRegionHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Incomplete || got.Base != h.Base || got.Size != h.Size || got.ID != h.ID || got.TrapAddr != h.TrapAddr {
		t.Fatalf("decoded %+v", got)
	}
	if r := (&Region{hdr: got}); !r.Incomplete() || len(r.Functions()) != 0 {
		t.Fatalf("region %+v", r)
	}
}
