package arch

import "errors"

// Patch code reaches data and functions of other objects through slots
// of its own (docs/augmented-assembly.md §4). When the compiler referred
// to such a symbol directly, with a 32-bit PC-relative displacement (it
// cannot know the symbol lives out of reach), extraction rewrites the
// instruction to go through a slot: in place when an equivalent
// instruction of the same length exists, otherwise by moving it to a
// thunk that loads the slot into a scratch register.

// IndirectTarget is what a field of a rewrite must point at.
type IndirectTarget uint8

const (
	// ToSlot: the slot holding the symbol's address.
	ToSlot IndirectTarget = iota
	// ToThunk: the first byte of the rewrite's thunk.
	ToThunk
	// ToBack: the first byte after the rewritten instruction.
	ToBack
)

// IndirectField is a 32-bit PC-relative field of a rewrite.
type IndirectField struct {
	// InThunk says the field is in Thunk, not in Site.
	InThunk bool
	// Off is the field's offset in Site or Thunk.
	Off int
	To  IndirectTarget
	// Addend is the addend of the PC-relative relocation that fills the
	// field: minus the distance from the field to the end of its
	// instruction.
	Addend int64
}

// Indirect is the rewrite of one instruction.
type Indirect struct {
	// Site replaces the instruction and has its length.
	Site []byte
	// Thunk is code to place elsewhere in the patch text, or nil.
	Thunk  []byte
	Fields []IndirectField
}

// ErrDirectBranch means the instruction is a direct call or jump: it
// needs no slot, only the call relocation type, which the patcher sends
// through a far-jump stub when the callee is out of reach.
var ErrDirectBranch = errors.New("direct call or jump")

// ErrNoIndirect means the instruction has no rewrite through a slot.
var ErrNoIndirect = errors.New("instruction cannot be rewritten to use a slot")

// PCRel32 returns the 32-bit PC-relative address relocation type: the
// one for direct calls and jumps when call is set, the plain one
// otherwise.
func (a *Arch) PCRel32(call bool) (uint32, bool) {
	for typ, r := range a.Relocs {
		if r.Class == ClassAddress && r.Size == 4 && r.PCRel && r.IsCall == call {
			return typ, true
		}
	}
	return 0, false
}
