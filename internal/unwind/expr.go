package unwind

import (
	"errors"
	"fmt"
)

// ErrExpression means a DWARF expression in the call frame information
// could not be evaluated: an operation this evaluator lacks, a register it
// does not know, a stack underflow, or too many steps.
var ErrExpression = errors.New("DWARF expression cannot be evaluated")

// DWARF expression operations that may appear in call frame information.
const (
	opAddr       = 0x03
	opDeref      = 0x06
	opConst1u    = 0x08
	opConst1s    = 0x09
	opConst2u    = 0x0a
	opConst2s    = 0x0b
	opConst4u    = 0x0c
	opConst4s    = 0x0d
	opConst8u    = 0x0e
	opConst8s    = 0x0f
	opConstu     = 0x10
	opConsts     = 0x11
	opDup        = 0x12
	opDrop       = 0x13
	opOver       = 0x14
	opPick       = 0x15
	opSwap       = 0x16
	opRot        = 0x17
	opAbs        = 0x19
	opAnd        = 0x1a
	opDiv        = 0x1b
	opMinus      = 0x1c
	opMod        = 0x1d
	opMul        = 0x1e
	opNeg        = 0x1f
	opNot        = 0x20
	opOr         = 0x21
	opPlus       = 0x22
	opPlusUconst = 0x23
	opShl        = 0x24
	opShr        = 0x25
	opShra       = 0x26
	opXor        = 0x27
	opBra        = 0x28
	opEq         = 0x29
	opGe         = 0x2a
	opGt         = 0x2b
	opLe         = 0x2c
	opLt         = 0x2d
	opNe         = 0x2e
	opSkip       = 0x2f
	opLit0       = 0x30
	opLit31      = 0x4f
	opBreg0      = 0x70
	opBreg31     = 0x8f
	opBregx      = 0x92
	opDerefSize  = 0x94
	opNop        = 0x96
)

const (
	exprStackSize = 64
	// exprMaxSteps stops a branch loop in a corrupt expression.
	exprMaxSteps = 10000
)

// evalExpr evaluates code with push (the CFA, for register rules) on the
// stack first when hasPush is set, and returns the top of the stack.
func evalExpr(a *Arch, code []byte, regs *Regs, mem Memory, push uint64, hasPush bool) (uint64, error) {
	var stack [exprStackSize]uint64
	sp := 0
	if hasPush {
		stack[0] = push
		sp = 1
	}
	r := reader{data: code}
	fail := func(op byte, why string) (uint64, error) {
		return 0, fmt.Errorf("%w: operation %#x at byte %d: %s", ErrExpression, op, r.pos, why)
	}
	for steps := 0; r.pos < len(code); steps++ {
		if steps == exprMaxSteps {
			return fail(0, "too many steps")
		}
		op := r.u8()
		// need is how many operands the operation pops.
		need := 0
		switch {
		case op == opDeref || op == opDerefSize || op == opDup || op == opDrop || op == opAbs || op == opNeg || op == opNot || op == opPlusUconst || op == opBra:
			need = 1
		case op == opOver || op == opSwap || op >= opAnd && op <= opXor && op != opNeg && op != opNot && op != opPlusUconst || op >= opEq && op <= opNe:
			need = 2
		case op == opRot:
			need = 3
		}
		if sp < need {
			return fail(op, "stack underflow")
		}
		if sp == exprStackSize {
			return fail(op, "stack overflow")
		}
		switch {
		case op >= opLit0 && op <= opLit31:
			stack[sp] = uint64(op - opLit0)
			sp++
		case op >= opBreg0 && op <= opBreg31 || op == opBregx:
			reg := uint64(op - opBreg0)
			if op == opBregx {
				reg = r.uleb()
			}
			off := r.sleb()
			v, ok := regs.Get(int(reg))
			if !ok || int(reg) >= a.NumRegs {
				return fail(op, fmt.Sprintf("register %s is not known in this frame", a.RegName(int(reg))))
			}
			stack[sp] = v + uint64(off)
			sp++
		case op == opAddr:
			if a.PtrSize == 4 {
				stack[sp] = uint64(r.u32())
			} else {
				stack[sp] = r.u64()
			}
			sp++
		case op == opConst1u:
			stack[sp] = uint64(r.u8())
			sp++
		case op == opConst1s:
			stack[sp] = uint64(int64(int8(r.u8())))
			sp++
		case op == opConst2u:
			stack[sp] = uint64(r.u16())
			sp++
		case op == opConst2s:
			stack[sp] = uint64(int64(int16(r.u16())))
			sp++
		case op == opConst4u:
			stack[sp] = uint64(r.u32())
			sp++
		case op == opConst4s:
			stack[sp] = uint64(int64(int32(r.u32())))
			sp++
		case op == opConst8u || op == opConst8s:
			stack[sp] = r.u64()
			sp++
		case op == opConstu:
			stack[sp] = r.uleb()
			sp++
		case op == opConsts:
			stack[sp] = uint64(r.sleb())
			sp++
		case op == opDup:
			stack[sp] = stack[sp-1]
			sp++
		case op == opDrop:
			sp--
		case op == opOver:
			stack[sp] = stack[sp-2]
			sp++
		case op == opPick:
			i := int(r.u8())
			if i >= sp {
				return fail(op, "pick beyond the stack")
			}
			stack[sp] = stack[sp-1-i]
			sp++
		case op == opSwap:
			stack[sp-1], stack[sp-2] = stack[sp-2], stack[sp-1]
		case op == opRot:
			stack[sp-1], stack[sp-2], stack[sp-3] = stack[sp-2], stack[sp-3], stack[sp-1]
		case op == opDeref:
			v, err := mem.Word(stack[sp-1])
			if err != nil {
				return 0, fmt.Errorf("%w: DW_OP_deref of %#x", ErrUnreadable, stack[sp-1])
			}
			stack[sp-1] = v
		case op == opDerefSize:
			n := r.u8()
			if n == 0 || n > 8 {
				return fail(op, fmt.Sprintf("size %d", n))
			}
			v, err := mem.Word(stack[sp-1])
			if err != nil {
				return 0, fmt.Errorf("%w: DW_OP_deref_size of %#x", ErrUnreadable, stack[sp-1])
			}
			if n < 8 {
				v &= 1<<(8*uint(n)) - 1
			}
			stack[sp-1] = v
		case op == opAbs:
			if int64(stack[sp-1]) < 0 {
				stack[sp-1] = -stack[sp-1]
			}
		case op == opNeg:
			stack[sp-1] = -stack[sp-1]
		case op == opNot:
			stack[sp-1] = ^stack[sp-1]
		case op == opPlusUconst:
			stack[sp-1] += r.uleb()
		case op == opBra:
			off := int16(r.u16())
			sp--
			if stack[sp] != 0 {
				if !r.jump(int(off)) {
					return fail(op, "branch outside the expression")
				}
			}
		case op == opSkip:
			if !r.jump(int(int16(r.u16()))) {
				return fail(op, "skip outside the expression")
			}
		case op == opNop:
		case need == 2:
			b, x := stack[sp-1], stack[sp-2]
			sp--
			var v uint64
			switch op {
			case opAnd:
				v = x & b
			case opOr:
				v = x | b
			case opXor:
				v = x ^ b
			case opPlus:
				v = x + b
			case opMinus:
				v = x - b
			case opMul:
				v = x * b
			case opDiv:
				if b == 0 {
					return fail(op, "division by zero")
				}
				v = uint64(int64(x) / int64(b))
			case opMod:
				if b == 0 {
					return fail(op, "division by zero")
				}
				v = x % b
			case opShl:
				v = x << (b & 63)
			case opShr:
				v = x >> (b & 63)
			case opShra:
				v = uint64(int64(x) >> (b & 63))
			case opEq:
				v = b2u(x == b)
			case opNe:
				v = b2u(x != b)
			case opGe:
				v = b2u(int64(x) >= int64(b))
			case opGt:
				v = b2u(int64(x) > int64(b))
			case opLe:
				v = b2u(int64(x) <= int64(b))
			case opLt:
				v = b2u(int64(x) < int64(b))
			default:
				return fail(op, "not supported in call frame information")
			}
			stack[sp-1] = v
		default:
			return fail(op, "not supported in call frame information")
		}
		if r.bad {
			return fail(op, "operands run past the end")
		}
	}
	if sp == 0 {
		return 0, fmt.Errorf("%w: empty stack at the end", ErrExpression)
	}
	return stack[sp-1], nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// jump moves the position by off bytes from the current one.
func (r *reader) jump(off int) bool {
	p := r.pos + off
	if p < 0 || p > len(r.data) {
		return false
	}
	r.pos = p
	return true
}
