// Package cfi names the encodings of DWARF call frame information as it
// appears in .eh_frame: the call frame instructions and the pointer
// encodings. The unwinder reads them from every loaded object; the differ
// writes them into the .hotpatch.eh_frame of patch code. One table keeps
// the two in agreement.
package cfi

// Call frame instructions (DWARF 5 §6.4.2, plus the GNU extensions gcc and
// glibc emit). The first three carry an operand in their low six bits.
const (
	AdvanceLoc        = 0x40 // delta in the low six bits
	Offset            = 0x80 // register in the low six bits
	Restore           = 0xc0 // register in the low six bits
	Nop               = 0x00
	SetLoc            = 0x01
	AdvanceLoc1       = 0x02
	AdvanceLoc2       = 0x03
	AdvanceLoc4       = 0x04
	OffsetExtended    = 0x05
	RestoreExtended   = 0x06
	Undefined         = 0x07
	SameValue         = 0x08
	Register          = 0x09
	RememberState     = 0x0a
	RestoreState      = 0x0b
	DefCFA            = 0x0c
	DefCFARegister    = 0x0d
	DefCFAOffset      = 0x0e
	DefCFAExpression  = 0x0f
	Expression        = 0x10
	OffsetExtendedSF  = 0x11
	DefCFASF          = 0x12
	DefCFAOffsetSF    = 0x13
	ValOffset         = 0x14
	ValOffsetSF       = 0x15
	ValExpression     = 0x16
	MIPSAdvanceLoc8   = 0x1d
	GNUWindowSave     = 0x2d
	GNUArgsSize       = 0x2e
	GNUNegOffsetExtnd = 0x2f
)

// Pointer encodings (DW_EH_PE_*): the low four bits give the format, the
// next three what the value is relative to, and the top bit an
// indirection.
const (
	PEAbsptr  = 0x00
	PEULEB128 = 0x01
	PEUdata2  = 0x02
	PEUdata4  = 0x03
	PEUdata8  = 0x04
	PESLEB128 = 0x09
	PESdata2  = 0x0a
	PESdata4  = 0x0b
	PESdata8  = 0x0c

	PEPCRel   = 0x10
	PETextRel = 0x20
	PEDataRel = 0x30
	PEFuncRel = 0x40
	PEAligned = 0x50

	PEIndirect = 0x80
	PEOmit     = 0xff
)
