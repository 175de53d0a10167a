package unwind

import (
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/cfi"
)

// ErrBadCFI means the CFA instructions of an FDE could not be executed:
// an unknown opcode, truncated operands, or state the unwinder cannot
// hold.
var ErrBadCFI = errors.New("call frame instructions cannot be executed")

// ruleKind says how to recover a register of the caller.
type ruleKind uint8

const (
	// ruleUnspecified: no instruction mentions the register; like GCC's
	// unwinder, take it as unchanged.
	ruleUnspecified ruleKind = iota
	// ruleSame: unchanged (DW_CFA_same_value).
	ruleSame
	ruleUndefined
	// ruleOffset: saved at CFA+off.
	ruleOffset
	// ruleValOffset: the value is CFA+off.
	ruleValOffset
	// ruleRegister: the value is in register reg.
	ruleRegister
	// ruleExpression: saved at the address the expression computes, with
	// the CFA pushed first.
	ruleExpression
	// ruleValExpression: the value is what the expression computes.
	ruleValExpression
)

type rule struct {
	kind ruleKind
	reg  uint16
	off  int64
	// expr bounds the expression bytes in the table's data.
	exprStart, exprEnd uint32
}

type cfaRule struct {
	isExpr             bool
	reg                int
	off                int64
	exprStart, exprEnd uint32
}

// row is the unwinding rule set in effect at one code address.
type row struct {
	cfa  cfaRule
	regs [MaxRegs]rule
}

// rememberDepth bounds DW_CFA_remember_state nesting. gcc nests at most
// one level per shrink-wrapped region; glibc's assembly never more than
// two.
const rememberDepth = 8

// machine executes CFA instructions. It lives on the unwinder's stack:
// executing a frame's program allocates nothing.
type machine struct {
	t        *Table
	c        *cie
	row      row
	initial  row
	saved    [rememberDepth]row
	depth    int
	loc      uint64
	numRegs  int
	stopAt   uint64
	finished bool
}

// rowAt computes the rules in effect at the link-time address pc inside
// f.
func (m *machine) rowAt(t *Table, f *fde, pc uint64) error {
	m.t = t
	m.c = &t.cies[f.cie]
	m.row = row{}
	m.depth = 0
	m.numRegs = t.arch.NumRegs
	m.loc = f.pcBegin
	// The CIE's initial instructions never advance the location; run them
	// to the end.
	m.stopAt = ^uint64(0)
	m.finished = false
	if err := m.run(m.c.instrStart, m.c.instrEnd); err != nil {
		return err
	}
	m.initial = m.row
	m.depth = 0
	m.stopAt = pc
	m.finished = false
	return m.run(f.instrStart, f.instrEnd)
}

func (m *machine) bad(pos int, format string, args ...any) error {
	return fmt.Errorf("%w: at offset %#x of %s: %s", ErrBadCFI, pos, m.t.Name, fmt.Sprintf(format, args...))
}

// advance moves the location and stops execution once it passes the
// address asked for: the row before the advance is the one in effect.
func (m *machine) advance(delta uint64) {
	next := m.loc + delta*m.c.codeAlign
	if next > m.stopAt {
		m.finished = true
		return
	}
	m.loc = next
}

func (m *machine) setRule(reg uint64, r rule) {
	// Rules for registers the unwinder does not track (vector registers)
	// cannot matter to the CFA or the return address.
	if reg < uint64(m.numRegs) {
		m.row.regs[reg] = r
	}
}

func (m *machine) run(start, end uint32) error {
	r := reader{data: m.t.data[:end], pos: int(start)}
	da := m.c.dataAlign
	for r.pos < len(r.data) && !m.finished {
		pos := r.pos
		op := r.u8()
		switch op & 0xc0 {
		case cfi.AdvanceLoc:
			m.advance(uint64(op & 0x3f))
			continue
		case cfi.Offset:
			off := r.uleb()
			m.setRule(uint64(op&0x3f), rule{kind: ruleOffset, off: int64(off) * da})
			continue
		case cfi.Restore:
			if reg := op & 0x3f; int(reg) < m.numRegs {
				m.row.regs[reg] = m.initial.regs[reg]
			}
			continue
		}
		switch op {
		case cfi.Nop:
		case cfi.SetLoc:
			loc, _, err := r.pointer(m.c.fdeEnc, m.t.arch.PtrSize, pointerBases{section: m.t.addr})
			if err != nil {
				return m.bad(pos, "DW_CFA_set_loc: %v", err)
			}
			if loc > m.stopAt {
				m.finished = true
			} else {
				m.loc = loc
			}
		case cfi.AdvanceLoc1:
			m.advance(uint64(r.u8()))
		case cfi.AdvanceLoc2:
			m.advance(uint64(r.u16()))
		case cfi.AdvanceLoc4:
			m.advance(uint64(r.u32()))
		case cfi.MIPSAdvanceLoc8:
			m.advance(r.u64())
		case cfi.OffsetExtended:
			reg, off := r.uleb(), r.uleb()
			m.setRule(reg, rule{kind: ruleOffset, off: int64(off) * da})
		case cfi.OffsetExtendedSF:
			reg, off := r.uleb(), r.sleb()
			m.setRule(reg, rule{kind: ruleOffset, off: off * da})
		case cfi.GNUNegOffsetExtnd:
			reg, off := r.uleb(), r.uleb()
			m.setRule(reg, rule{kind: ruleOffset, off: -int64(off) * da})
		case cfi.ValOffset:
			reg, off := r.uleb(), r.uleb()
			m.setRule(reg, rule{kind: ruleValOffset, off: int64(off) * da})
		case cfi.ValOffsetSF:
			reg, off := r.uleb(), r.sleb()
			m.setRule(reg, rule{kind: ruleValOffset, off: off * da})
		case cfi.RestoreExtended:
			if reg := r.uleb(); reg < uint64(m.numRegs) {
				m.row.regs[reg] = m.initial.regs[reg]
			}
		case cfi.Undefined:
			m.setRule(r.uleb(), rule{kind: ruleUndefined})
		case cfi.SameValue:
			m.setRule(r.uleb(), rule{kind: ruleSame})
		case cfi.Register:
			reg, from := r.uleb(), r.uleb()
			if from >= uint64(m.numRegs) {
				return m.bad(pos, "DW_CFA_register: register %d is saved in untracked register %d", reg, from)
			}
			m.setRule(reg, rule{kind: ruleRegister, reg: uint16(from)})
		case cfi.RememberState:
			if m.depth == rememberDepth {
				return m.bad(pos, "DW_CFA_remember_state nested deeper than %d", rememberDepth)
			}
			m.saved[m.depth] = m.row
			m.depth++
		case cfi.RestoreState:
			if m.depth == 0 {
				return m.bad(pos, "DW_CFA_restore_state without remember_state")
			}
			m.depth--
			// The CFA rule is part of the saved state too (DWARF 5
			// clarified what gcc always assumed).
			m.row = m.saved[m.depth]
		case cfi.DefCFA:
			reg, off := r.uleb(), r.uleb()
			m.row.cfa = cfaRule{reg: int(reg), off: int64(off)}
		case cfi.DefCFASF:
			reg, off := r.uleb(), r.sleb()
			m.row.cfa = cfaRule{reg: int(reg), off: off * da}
		case cfi.DefCFARegister:
			m.row.cfa.reg = int(r.uleb())
			m.row.cfa.isExpr = false
		case cfi.DefCFAOffset:
			m.row.cfa.off = int64(r.uleb())
		case cfi.DefCFAOffsetSF:
			m.row.cfa.off = r.sleb() * da
		case cfi.DefCFAExpression:
			s, e := m.block(&r)
			m.row.cfa = cfaRule{isExpr: true, exprStart: s, exprEnd: e}
		case cfi.Expression, cfi.ValExpression:
			reg := r.uleb()
			s, e := m.block(&r)
			kind := ruleExpression
			if op == cfi.ValExpression {
				kind = ruleValExpression
			}
			m.setRule(reg, rule{kind: kind, exprStart: s, exprEnd: e})
		case cfi.GNUArgsSize:
			// Only a landing pad needs the outgoing argument size.
			r.uleb()
		case cfi.GNUWindowSave:
			// SPARC register windows, or AArch64 return address signing
			// (negate_ra_state), which the AArch64 table will have to
			// support by stripping the signature from return addresses.
			return m.bad(pos, "DW_CFA_GNU_window_save / AARCH64_negate_ra_state is not supported for %s", m.t.arch.Name)
		default:
			return m.bad(pos, "unknown call frame instruction %#x", op)
		}
		if r.bad {
			return m.bad(pos, "operands of instruction %#x run past the end", op)
		}
	}
	return nil
}

// block reads a ULEB128 length and skips that many bytes, returning their
// bounds in the table's data.
func (m *machine) block(r *reader) (uint32, uint32) {
	n := r.uleb()
	if n > uint64(r.remaining()) {
		r.fail()
		return 0, 0
	}
	s := r.pos
	r.pos += int(n)
	return uint32(s), uint32(r.pos)
}
