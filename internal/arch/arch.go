// Package arch holds what hotpatch needs to know about the instruction set
// of a traced program: how to encode the redirecting jump, the trap and
// system call instructions, the numbers of the system calls the patcher
// injects, how each relocation type is computed, and how DWARF numbers
// registers. Each architecture is one table (amd64.go), chosen at run time
// from the ELF machine of the patch or the target, so that adding AArch64
// is an addition and not a rewrite.
package arch

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// RelocClass says what the symbol value S of a relocation means, and so
// how the patcher must resolve it before Apply computes the field.
type RelocClass uint8

const (
	// ClassAddress: S is the symbol's run-time address.
	ClassAddress RelocClass = iota
	// ClassTPOff: S is the variable's offset from the thread pointer.
	ClassTPOff
	// ClassDTPMod: S is the TLS module id of the variable's object.
	ClassDTPMod
	// ClassDTPOff: S is the variable's offset inside its module's TLS
	// block.
	ClassDTPOff
)

// Overflow says which range the computed value must fit in.
type Overflow uint8

const (
	OverflowNone Overflow = iota
	OverflowSigned
	OverflowUnsigned
)

// RelocType describes how one ELF relocation type is computed: field =
// S + A (- P when PCRel), written in Size bytes little-endian.
type RelocType struct {
	Name     string
	Class    RelocClass
	Size     int
	PCRel    bool
	Overflow Overflow
	// IsCall marks types used for direct calls and jumps (PLT32), which may
	// be sent through a far-jump stub when the callee is out of reach.
	IsCall bool
}

// ErrUnknownReloc is returned for a relocation type the table lacks.
var ErrUnknownReloc = errors.New("unsupported relocation type")

// ErrRelocOverflow means a computed value does not fit its field: for a
// PC-relative reference, the symbol is further than ±2 GiB away.
var ErrRelocOverflow = errors.New("relocation overflows its field")

// Syscalls are the numbers of the system calls the patcher injects.
type Syscalls struct {
	Mmap, Munmap, Mprotect, Prctl int
	// Getpid is the harmless call a return hook makes.
	Getpid int
}

// SyscallCall is one system call of a sequence run in the target.
type SyscallCall struct {
	Nr   int
	Args []uint64
	// Success says which result lets the sequence go on.
	Success SyscallSuccess
}

// SyscallSuccess says how a sequence recognises a call that succeeded.
type SyscallSuccess uint8

const (
	// SuccessZero: the call returns 0 (mprotect, munmap).
	SuccessZero SyscallSuccess = iota
	// SuccessArg0: the call returns its first argument (mmap at a fixed
	// address).
	SuccessArg0
	// SuccessAlways: the result is not checked; the call is optional
	// (naming a mapping, which older kernels refuse).
	SuccessAlways
)

// SyscallCode is a sequence of system calls encoded to run in the target.
type SyscallCode struct {
	Code []byte
	// Failed[i] is the offset, from the start of Code, at which the
	// program counter stops when call i fails, with its result in the
	// result register; -1 for a call whose result is not checked.
	Failed []int
	// Done is the offset at which it stops after the last call.
	Done int
	// Trap is the offset of the final trap instruction, which a call
	// injected while the code is in place may return to. The code before
	// it makes the calls and falls through, so other code (EncodeCopy,
	// EncodeCall) may be put between sequences.
	Trap int
}

// FailedCall returns the index of the call whose failure stops the code at
// offset off, or -1.
func (c SyscallCode) FailedCall(off int) int {
	for i, f := range c.Failed {
		if f >= 0 && f == off {
			return i
		}
	}
	return -1
}

// Arch is one architecture's table.
type Arch struct {
	Name    string
	Machine elf.Machine
	// PtrSize is the size of an address in bytes.
	PtrSize int
	// JumpSize is the length of the redirecting jump written over an old
	// function's entry.
	JumpSize int
	// JumpReach is the largest distance the redirecting jump spans, in
	// either direction.
	JumpReach  int64
	encodeJump func(from, to uint64) []byte
	// ShortJumpSize is the length of the short jump a function too short
	// for the redirecting jump may get instead, to a trampoline between
	// ShortJumpMin and ShortJumpMax bytes from its end (redirect.go); 0
	// when the architecture has none.
	ShortJumpSize              int
	ShortJumpMin, ShortJumpMax int64
	encodeShort                func(from, to uint64) []byte
	// FarJumpSize is the length of a stub that jumps to any address.
	FarJumpSize int
	encodeFar   func(to uint64) []byte
	// Trap is the breakpoint instruction.
	Trap []byte
	// SyscallInsn is the instruction that enters the kernel.
	SyscallInsn []byte
	Sys         Syscalls
	// Relocs maps ELF relocation type numbers to how they are computed.
	Relocs map[uint32]RelocType
	// DWARFRegs names, by DWARF register number, the ptrace register that
	// holds it; "" means the unwinder cannot use that number.
	DWARFRegs []string
	// DWARFPC, DWARFSP and DWARFFP are the DWARF numbers of the program
	// counter (return address column), the stack pointer and the frame
	// pointer.
	DWARFPC, DWARFSP, DWARFFP int
	// PaddingLen returns how many leading bytes of b are padding that
	// the compiler or linker put between functions (nops, traps), which a
	// jump over a too-short function may overwrite.
	PaddingLen func(b []byte) int
	// CallBefore reports whether code, the bytes that end at a candidate
	// return address, ends with a call instruction. The conservative
	// stack scan uses it to tell return addresses from function pointers
	// and other data that happen to point into code.
	CallBefore func(code []byte) bool
	// BranchesTo reports whether code, a function's bytes loaded at addr,
	// contains a direct jump or branch to target. A loop whose head is the
	// function's entry makes a thread stopped at the entry unsafe to
	// redirect: it may be mid-loop with its arguments already changed.
	// Undecodable code counts as branching there.
	BranchesTo func(code []byte, addr, target uint64) bool
	// EncodeSyscalls returns code that makes each call in turn and traps
	// after the last one, or right after the first call whose result is
	// not the success its Success field describes. Every argument is an
	// immediate: the code reads no memory and may run from any executable
	// address. Running a sequence costs one round trip between tracer and
	// tracee instead of one per call.
	EncodeSyscalls func(calls []SyscallCall) SyscallCode
	// EncodeCopy returns code that copies n bytes from src to dst in the
	// target's memory and falls through.
	EncodeCopy func(dst, src, n uint64) []byte
	// EncodeCall returns code that calls the function at fn with integer
	// args (not a variadic function), as the platform's calling
	// convention says, on the stack below the thread's own past the red
	// zone, and falls through when it returns. The registers it changes
	// are the tracer's to restore.
	EncodeCall func(fn uint64, args []uint64) []byte
	// EncodeReturnHook returns a return hook (see ReturnHook) that goes
	// on to ret.
	EncodeReturnHook func(ret uint64) ReturnHook
	// ReturnSlot is where, relative to a frame's canonical frame address,
	// the frame's return address is stored when the frame was made by a
	// call instruction.
	ReturnSlot int64
	// Returns reports whether code, a whole function, contains a return
	// instruction. A function without one never returns to its caller
	// (an endless loop, or an exit through a noreturn call). Undecodable
	// code counts as returning: the caller then only waits, bounded.
	Returns func(code []byte) bool
	// InsnLen returns the length of the instruction at the start of
	// code.
	InsnLen func(code []byte) (int, error)
	// Indirect rewrites insn, one instruction whose 32-bit field at
	// offset field refers to a symbol directly, to read the symbol's
	// address from a slot instead (indirect.go). It returns
	// ErrDirectBranch for a direct call or jump, and ErrNoIndirect when
	// there is no such rewrite.
	Indirect func(insn []byte, field int) (Indirect, error)
	// GOTRelocs name the relocation types that mean "PC-relative to a
	// GOT slot holding S" (GOTPCREL and its relaxable forms); extraction
	// gives each such reference a slot of the patch.
	GOTRelocs map[uint32]string
	// ReturnAddressAdjust is subtracted from a return address to land
	// inside the call instruction when looking up which function a frame
	// belongs to.
	ReturnAddressAdjust uint64
}

// ForMachine returns the table for an ELF machine.
func ForMachine(m elf.Machine) (*Arch, error) {
	switch m {
	case elf.EM_X86_64:
		return AMD64, nil
	}
	return nil, fmt.Errorf("architecture %v is not supported (supported: x86-64)", m)
}

// EncodeJump returns the redirecting jump placed at from that lands at to,
// or false when to is out of its reach.
func (a *Arch) EncodeJump(from, to uint64) ([]byte, bool) {
	d := int64(to - (from + uint64(a.JumpSize)))
	if d > a.JumpReach || d < -a.JumpReach-1 {
		return nil, false
	}
	return a.encodeJump(from, to), true
}

// EncodeFarJump returns a position-independent stub that jumps to any
// address; it is FarJumpSize bytes long.
func (a *Arch) EncodeFarJump(to uint64) []byte { return a.encodeFar(to) }

// Reloc looks a relocation type up, naming it in the error.
func (a *Arch) Reloc(typ uint32) (RelocType, error) {
	r, ok := a.Relocs[typ]
	if !ok {
		return RelocType{}, fmt.Errorf("%w %s", ErrUnknownReloc, a.RelocName(typ))
	}
	return r, nil
}

// SlotReloc is the relocation type that fills a whole 8-byte slot with a
// value of class c (an address, a TLS offset, a module id): the type of
// the GOT-like slots that patch code reads through.
func (a *Arch) SlotReloc(c RelocClass) (uint32, bool) {
	for typ, r := range a.Relocs {
		if r.Class == c && r.Size == 8 && !r.PCRel {
			return typ, true
		}
	}
	return 0, false
}

// RelocName names a relocation type for messages, known or not.
func (a *Arch) RelocName(typ uint32) string {
	if r, ok := a.Relocs[typ]; ok {
		return r.Name
	}
	switch a.Machine {
	case elf.EM_X86_64:
		return elf.R_X86_64(typ).String()
	case elf.EM_AARCH64:
		return elf.R_AARCH64(typ).String()
	}
	return fmt.Sprintf("type %d", typ)
}

// Apply computes relocation r with symbol value s, addend addend and place
// p (the run-time address of the field), and stores it into field, which
// must be r.Size bytes long.
func (r RelocType) Apply(field []byte, s uint64, addend int64, p uint64) error {
	if len(field) != r.Size {
		return fmt.Errorf("%s: field of %d bytes, want %d", r.Name, len(field), r.Size)
	}
	v := s + uint64(addend)
	if r.PCRel {
		v -= p
	}
	switch r.Size {
	case 8:
		binary.LittleEndian.PutUint64(field, v)
	case 4:
		switch r.Overflow {
		case OverflowSigned:
			if int64(v) != int64(int32(v)) {
				return fmt.Errorf("%s: value %#x does not fit in 32 signed bits: %w", r.Name, v, ErrRelocOverflow)
			}
		case OverflowUnsigned:
			if v != uint64(uint32(v)) {
				return fmt.Errorf("%s: value %#x does not fit in 32 unsigned bits: %w", r.Name, v, ErrRelocOverflow)
			}
		}
		binary.LittleEndian.PutUint32(field, uint32(v))
	default:
		return fmt.Errorf("%s: unsupported field size %d", r.Name, r.Size)
	}
	return nil
}
