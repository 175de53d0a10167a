package unwind

import (
	"debug/elf"
	"fmt"
)

// MaxRegs bounds the DWARF register numbers an Arch may track; register
// sets are fixed-size arrays so that unwinding a frame allocates nothing.
const MaxRegs = 34

// Arch is what the unwinder needs to know about one instruction set. Each
// architecture is one value (arch_amd64.go); adding one is adding a table.
type Arch struct {
	Name    string
	Machine elf.Machine
	// PtrSize is the size of an address and of a stack word.
	PtrSize int
	// NumRegs is how many DWARF registers, numbered from 0, the unwinder
	// tracks. Rules for higher numbers (vector registers) are ignored: no
	// CFA or return address depends on them.
	NumRegs int
	// RegNames names registers by DWARF number, for messages.
	RegNames []string
	// PC is the slot of Regs holding the program counter, SP the stack
	// pointer's. On x86-64 the PC slot is the return address column.
	PC, SP int
	// DefaultRA is the return address column CIEs use.
	DefaultRA int
	// SignalFrame recognises a signal return trampoline that has no CFI
	// at regs' PC and, if it is one, returns the interrupted context the
	// kernel saved on the stack. Registers pass by value so that calling
	// through this field does not move the unwinder's state to the heap.
	SignalFrame func(mem Memory, regs Regs) (Regs, bool, error)
}

// ForMachine returns the table for an ELF machine.
func ForMachine(m elf.Machine) (*Arch, error) {
	switch m {
	case elf.EM_X86_64:
		return AMD64, nil
	}
	return nil, fmt.Errorf("unwinding %v code is not supported (supported: x86-64)", m)
}

// RegName names DWARF register n for messages.
func (a *Arch) RegName(n int) string {
	if n >= 0 && n < len(a.RegNames) {
		return a.RegNames[n]
	}
	return fmt.Sprintf("r%d", n)
}

// Regs is a register set indexed by DWARF register number.
type Regs struct {
	R [MaxRegs]uint64
	// Known has bit n set when R[n] holds a value: after unwinding
	// through a frame, registers the callee clobbered without saving are
	// unknown.
	Known uint64
}

// Set gives DWARF register n the value v.
func (r *Regs) Set(n int, v uint64) {
	r.R[n] = v
	r.Known |= 1 << uint(n)
}

// Get returns DWARF register n and whether it is known.
func (r *Regs) Get(n int) (uint64, bool) {
	if n < 0 || n >= MaxRegs {
		return 0, false
	}
	return r.R[n], r.Known&(1<<uint(n)) != 0
}

// DWARFSource is anything that reads registers by DWARF number, such as
// the ptrace package's register set.
type DWARFSource interface {
	DWARF(n int) (uint64, bool)
}

// RegsFrom copies the registers the architecture tracks from src.
func (a *Arch) RegsFrom(src DWARFSource) Regs {
	var r Regs
	for n := 0; n < a.NumRegs; n++ {
		if v, ok := src.DWARF(n); ok {
			r.Set(n, v)
		}
	}
	return r
}
