package asmdiff

// Everything the differ knows about one architecture's assembly: how patch
// code may reach what it references, and the call frame conventions used to
// re-encode CFI. Another architecture is another table like this one.

// relocAction says how patch code carries a reference written with a
// relocation modifier (the part after '@').
type relocAction uint8

const (
	// relocUnsupported refuses the reference.
	relocUnsupported relocAction = iota
	// relocPlain: no modifier. References to symbols outside the file go
	// through a hotpatch.ext placeholder.
	relocPlain
	// relocPLT: a call through the PLT. Kept as a PLT32 relocation
	// against the placeholder; the patcher builds a stub when the
	// callee is out of reach.
	relocPLT
	// relocGOT: a load of the address from the GOT; rewritten to a slot
	// of the patch's own.
	relocGOT
	// relocTPOFFGOT: an initial-exec TLS offset loaded from the GOT;
	// rewritten to a slot holding the TP offset.
	relocTPOFFGOT
	// relocTLSGD, relocTLSLD: general and local dynamic TLS; rewritten
	// to a slot holding the module and offset for __tls_get_addr.
	relocTLSGD
	relocTLSLD
	// relocKeep: the linker resolves the form by itself against a symbol
	// of the object (local-exec and local-dynamic offsets).
	relocKeep
)

type arch struct {
	// relocs maps lowercase relocation modifiers to their treatment.
	relocs map[string]relocAction
	// regs maps register names, as .cfi directives may write them, to
	// DWARF register numbers.
	regs map[string]uint64
	// Call frame conventions of the ABI, for the CIE.
	codeAlign  uint64
	dataAlign  int64
	raRegister uint64
	// initialCFI is what .cfi_startproc implies: the CFA and the return
	// address at function entry.
	initialCFI []byte
	// pointer is the directive for an address-sized datum.
	pointer string
}

var amd64 = &arch{
	relocs: map[string]relocAction{
		"":         relocPlain,
		"plt":      relocPLT,
		"gotpcrel": relocGOT,
		"gottpoff": relocTPOFFGOT,
		"tlsgd":    relocTLSGD,
		"tlsld":    relocTLSLD,
		"tpoff":    relocKeep,
		"dtpoff":   relocKeep,
		// @GOT, @GOTOFF, @GOTPLT, @PLTOFF, @GOTPCRELX, @SIZE, @TLSDESC,
		// @TLSCALL, @GOTNTPOFF, @NTPOFF and the rest are refused: gcc
		// uses them only for the large code model and 32-bit code,
		// and ld cannot resolve most of them in a section that is not
		// allocated.
	},
	regs: map[string]uint64{
		"%rax": 0, "%rdx": 1, "%rcx": 2, "%rbx": 3, "%rsi": 4, "%rdi": 5, "%rbp": 6, "%rsp": 7,
		"%r8": 8, "%r9": 9, "%r10": 10, "%r11": 11, "%r12": 12, "%r13": 13, "%r14": 14, "%r15": 15,
		"%rip":  16,
		"%xmm0": 17, "%xmm1": 18, "%xmm2": 19, "%xmm3": 20, "%xmm4": 21, "%xmm5": 22, "%xmm6": 23,
		"%xmm7": 24, "%xmm8": 25, "%xmm9": 26, "%xmm10": 27, "%xmm11": 28, "%xmm12": 29,
		"%xmm13": 30, "%xmm14": 31, "%xmm15": 32,
		"%st0": 33, "%st1": 34, "%st2": 35, "%st3": 36, "%st4": 37, "%st5": 38, "%st6": 39, "%st7": 40,
		"%mm0": 41, "%mm1": 42, "%mm2": 43, "%mm3": 44, "%mm4": 45, "%mm5": 46, "%mm6": 47, "%mm7": 48,
		"%rflags": 49, "%es": 50, "%cs": 51, "%ss": 52, "%ds": 53, "%fs": 54, "%gs": 55,
		"%fs.base": 58, "%gs.base": 59,
	},
	codeAlign:  1,
	dataAlign:  -8,
	raRegister: 16,
	// DW_CFA_def_cfa %rsp, 8; DW_CFA_offset %rip, cfa-8.
	initialCFI: []byte{0x0c, 7, 8, 0x80 | 16, 1},
	pointer:    ".quad",
}
