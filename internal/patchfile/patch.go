// Package patchfile reads and writes hotpatch patch files (.hpatch).
//
// A patch file holds everything the patcher needs to apply one patch to one
// ELF object (an executable or a shared library) identified by its GNU
// build-id: the patch sections, their symbols and relocations, and the table
// of functions whose old entries are redirected. docs/patch-format.md
// specifies the encoding byte for byte.
package patchfile

import (
	"debug/elf"
	"encoding/hex"
	"fmt"
	"time"
)

// Patch is the decoded content of a patch file.
type Patch struct {
	// Arch is the ELF machine the patch is built for (elf.EM_X86_64).
	Arch elf.Machine
	// BuildID is the GNU build-id of the target object.
	BuildID []byte
	// Target is the file name of the target object as it was built, for
	// messages; matching uses BuildID only.
	Target string
	// ID names the patch, such as "CVE-2024-1234".
	ID string
	// Level orders patches with the same ID: a higher level replaces a
	// lower one.
	Level uint32
	// Description is free text for humans.
	Description string
	// Labels are short tags such as CVE ids.
	Labels []string
	// Created is when the patch was built.
	Created time.Time
	// ToolVersion is the version of hotpatch that built the patch.
	ToolVersion string

	Sections []Section
	// Symbols are referenced by index from Relocs and Funcs. Index 0 is
	// the null symbol, as in ELF; it stands for "the target object" where
	// a relocation needs a module but no symbol (R_X86_64_DTPMOD64).
	Symbols []Symbol
	Relocs  []Reloc
	Funcs   []Func

	// Signatures are detached signature blocks that follow the checksum.
	Signatures []Signature

	// FormatMajor and FormatMinor are the version of the file as read.
	// Write always writes the current version.
	FormatMajor, FormatMinor uint16
	// Checksum is the SHA-256 of the file up to the checksum record, as
	// read or as written.
	Checksum [32]byte

	// signed is what a signature covers: the file as read, from its
	// first byte to the end of the checksum record.
	signed []byte
}

// SignedData returns the bytes a signature of p covers: the file from its
// first byte up to and including the checksum record. It is nil for a
// patch that was neither read nor encoded.
func (p *Patch) SignedData() []byte { return p.signed }

// SectionKind says how a patch section is mapped in the target.
type SectionKind uint8

const (
	// SectionText is code: mapped read and execute.
	SectionText SectionKind = 1
	// SectionROData is read-only data: mapped read only.
	SectionROData SectionKind = 2
	// SectionData is writable data: mapped read and write.
	SectionData SectionKind = 3
)

func (k SectionKind) String() string {
	switch k {
	case SectionText:
		return "rx"
	case SectionROData:
		return "ro"
	case SectionData:
		return "rw"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Section is one patch section.
type Section struct {
	Name string
	Kind SectionKind
	// NoBits marks a zero-filled section (bss) that has a Size but no Data.
	NoBits bool
	// Align is the required alignment, a power of two (1 for none).
	Align uint64
	// Size is the size in memory. For sections with data it equals
	// len(Data).
	Size uint64
	Data []byte
}

// SymbolKind says where a symbol is defined, and so how the patcher
// resolves it.
type SymbolKind uint8

const (
	// SymNull is the null symbol at index 0.
	SymNull SymbolKind = 0
	// SymNew is a function or variable that the patch introduces. It is
	// defined in a patch section: Section and Value give the place.
	SymNew SymbolKind = 1
	// SymPatch is any other place in a patch section: a replacement
	// function, a section start, a slot.
	SymPatch SymbolKind = 2
	// SymTarget is defined in the target object. Value is its offset from
	// the object's load base (its st_value in a position-independent
	// object, its absolute address in a non-PIE executable, where the
	// load base is 0).
	SymTarget SymbolKind = 3
	// SymExternal is looked up by Name (and Version when set) in the
	// loaded objects of the process, in load order, executable first.
	SymExternal SymbolKind = 4
	// SymTLS is a thread-local variable defined in the target object.
	// Value is its offset within the target's TLS block (its st_value).
	SymTLS SymbolKind = 5
	// SymExternalTLS is a thread-local variable of another loaded object,
	// looked up by Name and Version.
	SymExternalTLS SymbolKind = 6
)

func (k SymbolKind) String() string {
	switch k {
	case SymNull:
		return "null"
	case SymNew:
		return "new"
	case SymPatch:
		return "patch"
	case SymTarget:
		return "target"
	case SymExternal:
		return "external"
	case SymTLS:
		return "tls"
	case SymExternalTLS:
		return "external-tls"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// InPatch reports whether the symbol is defined in a patch section.
func (k SymbolKind) InPatch() bool { return k == SymNew || k == SymPatch }

// Symbol is a symbol that a relocation or the function table refers to.
type Symbol struct {
	Name string
	Kind SymbolKind
	// Type is the ELF symbol type (STT_FUNC, STT_OBJECT, STT_NOTYPE,
	// STT_TLS, STT_SECTION), for messages and for ifunc handling.
	Type elf.SymType
	// Section indexes Sections for SymNew and SymPatch; it is 0 and
	// ignored otherwise.
	Section uint32
	// Value is the offset in Section (SymNew, SymPatch), the offset from
	// the target's load base (SymTarget) or the offset in the target's TLS
	// block (SymTLS). It is 0 for external symbols.
	Value uint64
	Size  uint64
	// Version is the symbol version an external symbol binds to, such as
	// "GLIBC_2.14"; empty means the default version.
	Version string
}

// Reloc is a relocation to apply at a place in a patch section.
type Reloc struct {
	// Section indexes Sections: the section the place is in.
	Section uint32
	// Offset is the place, as an offset in Section.
	Offset uint64
	// Type is the architecture's ELF relocation type (elf.R_X86_64_PC32
	// and friends, as a number).
	Type uint32
	// Symbol indexes Symbols.
	Symbol uint32
	Addend int64
}

// FuncFlags qualify a function table entry.
type FuncFlags uint32

const (
	// FuncRangeOnly marks a part (such as F.cold) that is never entered
	// from outside its function: its range is checked for safety but no
	// jump is written over it.
	FuncRangeOnly FuncFlags = 1 << 0
)

// Func is one entry of the function table: an old function in the target
// and the patch code that replaces it.
type Func struct {
	// Name is the symbol name as in the source (mangled for C++).
	Name string
	// OldOffset is the old function's offset from the target's load base.
	OldOffset uint64
	OldSize   uint64
	// NewSymbol indexes Symbols: the replacement (a SymPatch symbol).
	NewSymbol uint32
	NewSize   uint64
	Flags     FuncFlags
}

// Signature is a detached signature over the file up to and including the
// checksum record (SignedData). The reader keeps every block it finds;
// internal/trust verifies them.
type Signature struct {
	// Algorithm identifies the scheme: SigEd25519.
	Algorithm uint16
	// KeyID names the signing key: for Ed25519, the lowercase hex of the
	// first 8 bytes of the SHA-256 of the 32-byte public key.
	KeyID string
	Sig   []byte
}

// SigEd25519 is the Ed25519 signature algorithm (RFC 8032, pure Ed25519
// over SignedData, 64-byte signatures).
const SigEd25519 uint16 = 1

// BuildIDString is the build-id in lowercase hex, as file names use it.
func (p *Patch) BuildIDString() string { return hex.EncodeToString(p.BuildID) }

// FileName is the conventional name of the patch file: BUILDID.hpatch.
func (p *Patch) FileName() string { return p.BuildIDString() + ".hpatch" }
