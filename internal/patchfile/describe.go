package patchfile

import (
	"debug/elf"
	"encoding/hex"
	"fmt"
	"time"
)

// Document is the stable JSON form of a patch file, as `hotpatch inspect
// --json` prints it. Keys are snake_case; fields are only ever added.
type Document struct {
	FormatVersion string         `json:"format_version"`
	Arch          string         `json:"arch"`
	BuildID       string         `json:"build_id"`
	Target        string         `json:"target"`
	ID            string         `json:"id"`
	Level         uint32         `json:"level"`
	Description   string         `json:"description"`
	Labels        []string       `json:"labels"`
	Created       *time.Time     `json:"created"`
	ToolVersion   string         `json:"tool_version"`
	Checksum      string         `json:"checksum"`
	Functions     []FuncDoc      `json:"functions"`
	Sections      []SectionDoc   `json:"sections"`
	Symbols       []SymbolDoc    `json:"symbols"`
	Relocations   []RelocDoc     `json:"relocations"`
	Signatures    []SignatureDoc `json:"signatures"`
}

type FuncDoc struct {
	Name      string `json:"name"`
	OldOffset uint64 `json:"old_offset"`
	OldSize   uint64 `json:"old_size"`
	NewSymbol string `json:"new_symbol"`
	NewSize   uint64 `json:"new_size"`
	RangeOnly bool   `json:"range_only"`
}

type SectionDoc struct {
	Index  int    `json:"index"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Align  uint64 `json:"align"`
	Size   uint64 `json:"size"`
	NoBits bool   `json:"nobits"`
}

type SymbolDoc struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Type    string `json:"type"`
	Section *int   `json:"section,omitempty"`
	Value   uint64 `json:"value"`
	Size    uint64 `json:"size"`
	Version string `json:"version,omitempty"`
}

type RelocDoc struct {
	Section string `json:"section"`
	Offset  uint64 `json:"offset"`
	Type    string `json:"type"`
	Symbol  string `json:"symbol"`
	Addend  int64  `json:"addend"`
}

type SignatureDoc struct {
	Algorithm uint16 `json:"algorithm"`
	KeyID     string `json:"key_id"`
	Size      int    `json:"size"`
	// Status is the verdict of a verifier (verified, untrusted, invalid)
	// and Reason why it is not verified; a reader alone leaves both empty.
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Describe returns the document form of p.
func Describe(p *Patch) *Document {
	d := &Document{
		FormatVersion: fmt.Sprintf("%d.%d", p.FormatMajor, p.FormatMinor),
		Arch:          ArchName(p.Arch),
		BuildID:       p.BuildIDString(),
		Target:        p.Target,
		ID:            p.ID,
		Level:         p.Level,
		Description:   p.Description,
		Labels:        append([]string{}, p.Labels...),
		ToolVersion:   p.ToolVersion,
		Checksum:      "sha256:" + hex.EncodeToString(p.Checksum[:]),
		Functions:     []FuncDoc{},
		Sections:      []SectionDoc{},
		Symbols:       []SymbolDoc{},
		Relocations:   []RelocDoc{},
		Signatures:    []SignatureDoc{},
	}
	if !p.Created.IsZero() {
		t := p.Created.UTC()
		d.Created = &t
	}
	for _, f := range p.Funcs {
		d.Functions = append(d.Functions, FuncDoc{
			Name: f.Name, OldOffset: f.OldOffset, OldSize: f.OldSize,
			NewSymbol: p.symbolName(f.NewSymbol), NewSize: f.NewSize,
			RangeOnly: f.Flags&FuncRangeOnly != 0,
		})
	}
	for i, s := range p.Sections {
		d.Sections = append(d.Sections, SectionDoc{Index: i, Name: s.Name, Kind: s.Kind.String(), Align: s.Align, Size: s.Size, NoBits: s.NoBits})
	}
	for i, s := range p.Symbols {
		sd := SymbolDoc{Index: i, Name: s.Name, Kind: s.Kind.String(), Type: SymTypeName(s.Type), Value: s.Value, Size: s.Size, Version: s.Version}
		if s.Kind.InPatch() {
			sec := int(s.Section)
			sd.Section = &sec
		}
		d.Symbols = append(d.Symbols, sd)
	}
	for _, r := range p.Relocs {
		sec := fmt.Sprint(r.Section)
		if int(r.Section) < len(p.Sections) {
			sec = p.Sections[r.Section].Name
		}
		d.Relocations = append(d.Relocations, RelocDoc{
			Section: sec, Offset: r.Offset, Type: RelocTypeName(p.Arch, r.Type),
			Symbol: p.symbolName(r.Symbol), Addend: r.Addend,
		})
	}
	for _, s := range p.Signatures {
		d.Signatures = append(d.Signatures, SignatureDoc{Algorithm: s.Algorithm, KeyID: s.KeyID, Size: len(s.Sig)})
	}
	return d
}

func (p *Patch) symbolName(i uint32) string {
	if int(i) >= len(p.Symbols) {
		return fmt.Sprintf("#%d", i)
	}
	s := p.Symbols[i]
	switch {
	case i == 0:
		return "(target object)"
	case s.Version != "":
		return s.Name + "@" + s.Version
	case s.Name == "":
		return fmt.Sprintf("#%d", i)
	}
	return s.Name
}

// ArchName is the short architecture name used in messages and JSON.
func ArchName(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "x86-64"
	case elf.EM_AARCH64:
		return "aarch64"
	}
	return m.String()
}

// RelocTypeName names a relocation type of the given architecture.
func RelocTypeName(m elf.Machine, t uint32) string {
	switch m {
	case elf.EM_X86_64:
		return elf.R_X86_64(t).String()
	case elf.EM_AARCH64:
		return elf.R_AARCH64(t).String()
	}
	return fmt.Sprint(t)
}

// SymTypeName names an ELF symbol type without its STT_ prefix.
func SymTypeName(t elf.SymType) string {
	switch t {
	case elf.STT_NOTYPE:
		return "notype"
	case elf.STT_OBJECT:
		return "object"
	case elf.STT_FUNC:
		return "func"
	case elf.STT_SECTION:
		return "section"
	case elf.STT_FILE:
		return "file"
	case elf.STT_TLS:
		return "tls"
	case elf.STT_GNU_IFUNC:
		return "ifunc"
	}
	return t.String()
}
