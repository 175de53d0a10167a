package arch

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

func init() {
	AMD64.InsnLen = amd64InsnLen
	AMD64.Indirect = amd64Indirect
	AMD64.GOTRelocs = map[uint32]string{
		9:  "R_X86_64_GOTPCREL",
		41: "R_X86_64_GOTPCRELX",
		42: "R_X86_64_REX_GOTPCRELX",
	}
}

func amd64InsnLen(code []byte) (int, error) {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return 0, err
	}
	if inst.Op == 0 || inst.Len == 0 {
		return 0, fmt.Errorf("truncated instruction % x", code[:min(len(code), 15)])
	}
	return inst.Len, nil
}

// Thunk building blocks. The thunk steps below the red zone before it
// pushes the scratch register, so that a leaf function's red zone
// survives, and uses only instructions that leave the flags alone (lea,
// push, mov, pop), so that flags the moved instruction sets reach the
// code after it.
var (
	amd64SkipRedZone = []byte{0x48, 0x8d, 0x64, 0x24, 0x80}                   // lea -128(%rsp),%rsp
	amd64BackRedZone = []byte{0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00} // lea 128(%rsp),%rsp
)

// amd64Indirect rewrites the instruction insn, whose 32-bit field at
// offset field refers to a symbol directly, to take the symbol's address
// from a slot.
func amd64Indirect(insn []byte, field int) (Indirect, error) {
	inst, err := x86asm.Decode(insn, 64)
	if err != nil || inst.Len != len(insn) {
		return Indirect{}, fmt.Errorf("undecodable instruction % x: %w", insn, ErrNoIndirect)
	}
	if field < 1 || field+4 > len(insn) {
		return Indirect{}, fmt.Errorf("field at %d outside the %d-byte instruction %v: %w", field, len(insn), inst, ErrNoIndirect)
	}
	tail := len(insn) - field - 4
	switch inst.Op {
	case x86asm.CALL, x86asm.JMP:
		if _, rel := inst.Args[0].(x86asm.Rel); rel && inst.PCRel == 4 && inst.PCRelOff == field {
			return Indirect{}, ErrDirectBranch
		}
	}
	// A RIP-relative operand is ModRM mod=00 rm=101 right before the
	// displacement (it never has a SIB byte).
	if insn[field-1]&0xc7 != 0x05 || !hasRIPOperand(inst) {
		return amd64IndirectImm(inst, insn, field)
	}
	switch inst.Op {
	case x86asm.LEA:
		// lea S(%rip),%r -> mov slot(%rip),%r: the reverse of the
		// linker's GOTPCRELX relaxation, same length.
		if insn[field-2] != 0x8d {
			return Indirect{}, fmt.Errorf("%v: unexpected encoding % x: %w", inst, insn, ErrNoIndirect)
		}
		site := append([]byte(nil), insn...)
		site[field-2] = 0x8b
		return Indirect{Site: site, Fields: []IndirectField{{Off: field, To: ToSlot, Addend: -4 - int64(tail)}}}, nil
	case x86asm.CALL, x86asm.JMP:
		// call/jmp *S(%rip): r11 is free at a call (caller-saved, no
		// argument, not the static chain). The site calls or jumps to
		// the thunk, which jumps on through the slot; a call's return
		// address is the end of the site's 5 bytes, so the rest are
		// nops.
		op, fill := byte(0xe9), byte(0xcc)
		if inst.Op == x86asm.CALL {
			op, fill = 0xe8, 0x90
		}
		site := sitePrefix(op, len(insn), fill)
		// mov slot(%rip),%r11; mov (%r11),%r11; jmp *%r11
		thunk := []byte{0x4c, 0x8b, 0x1d, 0, 0, 0, 0, 0x4d, 0x8b, 0x1b, 0x41, 0xff, 0xe3}
		return Indirect{Site: site, Thunk: thunk, Fields: []IndirectField{
			{Off: 1, To: ToThunk, Addend: -4},
			{InThunk: true, Off: 3, To: ToSlot, Addend: -4},
		}}, nil
	case x86asm.PUSH, x86asm.POP, x86asm.LCALL, x86asm.LJMP:
		return Indirect{}, fmt.Errorf("%v uses the stack pointer, which the thunk moves: %w", inst, ErrNoIndirect)
	}
	for _, a := range inst.Args {
		switch a {
		case x86asm.RSP, x86asm.ESP, x86asm.SP, x86asm.SPB:
			return Indirect{}, fmt.Errorf("%v uses the stack pointer, which the thunk moves: %w", inst, ErrNoIndirect)
		case x86asm.AH, x86asm.BH, x86asm.CH, x86asm.DH:
			// These have no encoding once a REX prefix is present.
			return Indirect{}, fmt.Errorf("%v uses a high byte register: %w", inst, ErrNoIndirect)
		}
	}
	// Legacy prefixes, then an optional REX, then the opcode.
	pe := prefixEnd(insn, field-1)
	i := pe
	rex := byte(0x40)
	if insn[i]&0xf0 == 0x40 {
		rex = insn[i]
		i++
	}
	switch insn[i] {
	case 0xc4, 0xc5, 0x62:
		return Indirect{}, fmt.Errorf("%v is VEX or EVEX encoded: %w", inst, ErrNoIndirect)
	}
	scratch := byte(11)
	for _, r := range []byte{11, 10, 9} {
		if !usesReg(inst, r) {
			scratch = r
			break
		}
	}
	if usesReg(inst, scratch) {
		return Indirect{}, fmt.Errorf("%v leaves no scratch register: %w", inst, ErrNoIndirect)
	}
	// The instruction again, addressing (%scratch) instead of S(%rip):
	// ModRM rm names the register's low bits, REX.B its high bit.
	moved := append([]byte(nil), insn[:pe]...)
	moved = append(moved, rex|0x01)
	moved = append(moved, insn[i:field-1]...)
	moved = append(moved, insn[field-1]&0x38|scratch&7)
	moved = append(moved, insn[field+4:]...)

	thunk := append([]byte(nil), amd64SkipRedZone...)
	thunk = append(thunk, 0x41, 0x50+scratch&7) // push %scratch
	// mov slot(%rip),%scratch
	thunk = append(thunk, 0x4c, 0x8b, 0x05|(scratch&7)<<3)
	slotField := len(thunk)
	thunk = append(thunk, 0, 0, 0, 0)
	thunk = append(thunk, moved...)
	thunk = append(thunk, 0x41, 0x58+scratch&7) // pop %scratch
	thunk = append(thunk, amd64BackRedZone...)
	thunk = append(thunk, 0xe9)
	backField := len(thunk)
	thunk = append(thunk, 0, 0, 0, 0)
	return Indirect{Site: sitePrefix(0xe9, len(insn), 0xcc), Thunk: thunk, Fields: []IndirectField{
		{Off: 1, To: ToThunk, Addend: -4},
		{InThunk: true, Off: slotField, To: ToSlot, Addend: -4},
		{InThunk: true, Off: backField, To: ToBack, Addend: -4},
	}}, nil
}

// amd64IndirectImm rewrites "mov $S,%r" (the address as a 32-bit
// immediate, as non-PIE code takes it) to a load of the slot into the
// full register, which is what the zero- or sign-extended immediate
// would have held.
func amd64IndirectImm(inst x86asm.Inst, insn []byte, field int) (Indirect, error) {
	if inst.Op != x86asm.MOV || field+4 != len(insn) {
		return Indirect{}, fmt.Errorf("%v refers to the symbol neither as a RIP-relative operand nor as a move's immediate: %w", inst, ErrNoIndirect)
	}
	reg, ok := inst.Args[0].(x86asm.Reg)
	if !ok {
		return Indirect{}, fmt.Errorf("%v: %w", inst, ErrNoIndirect)
	}
	n, ok := gprNumber(reg)
	if !ok || len(insn) < 5 {
		return Indirect{}, fmt.Errorf("%v: %w", inst, ErrNoIndirect)
	}
	// mov slot(%rip),%r64; jmp back
	rexR := byte(0x48)
	if n >= 8 {
		rexR |= 0x04
	}
	thunk := []byte{rexR, 0x8b, 0x05 | (n&7)<<3, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0}
	return Indirect{Site: sitePrefix(0xe9, len(insn), 0xcc), Thunk: thunk, Fields: []IndirectField{
		{Off: 1, To: ToThunk, Addend: -4},
		{InThunk: true, Off: 3, To: ToSlot, Addend: -4},
		{InThunk: true, Off: 8, To: ToBack, Addend: -4},
	}}, nil
}

// sitePrefix is a 5-byte call or jump (op, rel32 left zero) padded with
// fill to n bytes.
func sitePrefix(op byte, n int, fill byte) []byte {
	site := make([]byte, n)
	site[0] = op
	for k := 5; k < n; k++ {
		site[k] = fill
	}
	return site
}

func hasRIPOperand(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			return true
		}
	}
	return false
}

func isLegacyPrefix(b byte) bool {
	switch b {
	case 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67:
		return true
	}
	return false
}

// prefixEnd is the offset of the first byte after the legacy prefixes.
func prefixEnd(insn []byte, limit int) int {
	i := 0
	for i < limit && isLegacyPrefix(insn[i]) {
		i++
	}
	return i
}

// gprNumber is the encoding number (0-15) of a general register of any
// width, except the high byte registers.
func gprNumber(r x86asm.Reg) (byte, bool) {
	for _, base := range []x86asm.Reg{x86asm.RAX, x86asm.EAX, x86asm.AX} {
		if r >= base && r < base+16 {
			return byte(r - base), true
		}
	}
	if r >= x86asm.AL && r <= x86asm.BL {
		return byte(r - x86asm.AL), true
	}
	if r >= x86asm.SPB && r <= x86asm.R15B {
		return byte(r-x86asm.SPB) + 4, true
	}
	return 0, false
}

// usesReg reports whether an operand of inst names general register n in
// any width.
func usesReg(inst x86asm.Inst, n byte) bool {
	for _, a := range inst.Args {
		switch a := a.(type) {
		case x86asm.Reg:
			if m, ok := gprNumber(a); ok && m == n {
				return true
			}
		case x86asm.Mem:
			for _, r := range []x86asm.Reg{a.Base, a.Index} {
				if m, ok := gprNumber(r); ok && m == n {
					return true
				}
			}
		}
	}
	return false
}
