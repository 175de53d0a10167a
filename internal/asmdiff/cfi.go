package asmdiff

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hotpatch/hotpatch/internal/asm"
	"github.com/hotpatch/hotpatch/internal/cfi"
)

// Call frame information of patch code. GNU as would put the FDEs of
// functions in .hotpatch.text into the allocated .eh_frame and change the
// layout of the original sections, so the differ drops the .cfi_*
// directives from patch code and encodes them itself, in .eh_frame format,
// into the non-allocated .hotpatch.eh_frame (docs/augmented-assembly.md §6).
// Pointers are absolute (DW_EH_PE_absptr): ordinary 64-bit relocations
// that the link keeps and extraction rewrites.

// fde is the call frame information of one part of a patch function,
// collected while its statements are written.
type fde struct {
	start, end  string // labels in .hotpatch.text
	personality string // expression of the personality routine, or ""
	lsda        string // expression of the LSDA, or ""
	simple      bool
	signal      bool
	// ops are the encoded instructions, as assembly lines.
	ops       []string
	lastLabel string
	cfaOffset int64
	// startLine is for messages.
	startLine int
}

type cieKey struct {
	personality string
	lsda        bool
	simple      bool
	signal      bool
}

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func bytesLine(parts ...[]byte) string {
	var sb strings.Builder
	sb.WriteString("\t.byte\t")
	n := 0
	for _, p := range parts {
		for _, c := range p {
			if n > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%#x", c)
			n++
		}
	}
	return sb.String()
}

func (a *arch) register(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 0, 32); err == nil {
		return n, true
	}
	if !strings.HasPrefix(s, "%") {
		s = "%" + s
	}
	n, ok := a.regs[s]
	return n, ok
}

func parseInt(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 0, 64)
	return n, err == nil
}

// at records that the next instruction applies at label, emitting an
// advance from the previous one when the place moved.
func (f *fde) at(label string) {
	if label != f.lastLabel {
		f.ops = append(f.ops, bytesLine([]byte{cfi.AdvanceLoc4}), "\t.long\t"+label+"-"+f.lastLabel)
		f.lastLabel = label
	}
}

// directive encodes one .cfi_* directive that applies at label. It
// returns a reason when the directive cannot be encoded.
func (e *emitter) cfiDirective(f *fde, st *asm.Stmt, label string) string {
	a := e.arch
	args := asm.SplitArgs(st.Args)
	reg := func(k int) (uint64, bool) {
		if k >= len(args) {
			return 0, false
		}
		return a.register(args[k])
	}
	num := func(k int) (int64, bool) {
		if k >= len(args) {
			return 0, false
		}
		return parseInt(args[k])
	}
	factored := func(off int64) (int64, bool) {
		if off%a.dataAlign != 0 {
			return 0, false
		}
		return off / a.dataAlign, true
	}
	offsetOp := func(r uint64, off int64) string {
		fo, ok := factored(off)
		if !ok {
			return "offset not a multiple of the data alignment"
		}
		f.at(label)
		switch {
		case fo >= 0 && r < 64:
			f.ops = append(f.ops, bytesLine([]byte{cfi.Offset | byte(r)}, uleb(uint64(fo))))
		case fo >= 0:
			f.ops = append(f.ops, bytesLine([]byte{cfi.OffsetExtended}, uleb(r), uleb(uint64(fo))))
		default:
			f.ops = append(f.ops, bytesLine([]byte{cfi.OffsetExtendedSF}, uleb(r), sleb(fo)))
		}
		return ""
	}
	defOffset := func(off int64) {
		f.at(label)
		f.cfaOffset = off
		if off >= 0 {
			f.ops = append(f.ops, bytesLine([]byte{cfi.DefCFAOffset}, uleb(uint64(off))))
			return
		}
		fo, _ := factored(off)
		f.ops = append(f.ops, bytesLine([]byte{cfi.DefCFAOffsetSF}, sleb(fo)))
	}
	switch st.Name {
	case ".cfi_def_cfa_offset":
		off, ok := num(0)
		if !ok {
			return "bad offset"
		}
		defOffset(off)
	case ".cfi_adjust_cfa_offset":
		off, ok := num(0)
		if !ok {
			return "bad offset"
		}
		defOffset(f.cfaOffset + off)
	case ".cfi_def_cfa":
		r, ok1 := reg(0)
		off, ok2 := num(1)
		if !ok1 || !ok2 || off < 0 {
			return "bad register or offset"
		}
		f.at(label)
		f.cfaOffset = off
		f.ops = append(f.ops, bytesLine([]byte{cfi.DefCFA}, uleb(r), uleb(uint64(off))))
	case ".cfi_def_cfa_register":
		r, ok := reg(0)
		if !ok {
			return "bad register"
		}
		f.at(label)
		f.ops = append(f.ops, bytesLine([]byte{cfi.DefCFARegister}, uleb(r)))
	case ".cfi_offset", ".cfi_rel_offset":
		r, ok1 := reg(0)
		off, ok2 := num(1)
		if !ok1 || !ok2 {
			return "bad register or offset"
		}
		if st.Name == ".cfi_rel_offset" {
			off -= f.cfaOffset
		}
		return offsetOp(r, off)
	case ".cfi_val_offset":
		r, ok1 := reg(0)
		off, ok2 := num(1)
		fo, ok3 := factored(off)
		if !ok1 || !ok2 || !ok3 {
			return "bad register or offset"
		}
		f.at(label)
		if fo >= 0 {
			f.ops = append(f.ops, bytesLine([]byte{cfi.ValOffset}, uleb(r), uleb(uint64(fo))))
		} else {
			f.ops = append(f.ops, bytesLine([]byte{cfi.ValOffsetSF}, uleb(r), sleb(fo)))
		}
	case ".cfi_restore", ".cfi_undefined", ".cfi_same_value":
		for k := range args {
			r, ok := reg(k)
			if !ok {
				return "bad register"
			}
			f.at(label)
			switch {
			case st.Name == ".cfi_restore" && r < 64:
				f.ops = append(f.ops, bytesLine([]byte{cfi.Restore | byte(r)}))
			case st.Name == ".cfi_restore":
				f.ops = append(f.ops, bytesLine([]byte{cfi.RestoreExtended}, uleb(r)))
			case st.Name == ".cfi_undefined":
				f.ops = append(f.ops, bytesLine([]byte{cfi.Undefined}, uleb(r)))
			default:
				f.ops = append(f.ops, bytesLine([]byte{cfi.SameValue}, uleb(r)))
			}
		}
	case ".cfi_register":
		r1, ok1 := reg(0)
		r2, ok2 := reg(1)
		if !ok1 || !ok2 {
			return "bad register"
		}
		f.at(label)
		f.ops = append(f.ops, bytesLine([]byte{cfi.Register}, uleb(r1), uleb(r2)))
	case ".cfi_remember_state":
		f.at(label)
		f.ops = append(f.ops, bytesLine([]byte{cfi.RememberState}))
	case ".cfi_restore_state":
		f.at(label)
		f.ops = append(f.ops, bytesLine([]byte{cfi.RestoreState}))
	case ".cfi_gnu_args_size":
		n, ok := num(0)
		if !ok || n < 0 {
			return "bad size"
		}
		f.at(label)
		f.ops = append(f.ops, bytesLine([]byte{cfi.GNUArgsSize}, uleb(uint64(n))))
	case ".cfi_escape":
		f.at(label)
		f.ops = append(f.ops, "\t.byte\t"+st.Args)
	case ".cfi_signal_frame":
		f.signal = true
	case ".cfi_personality", ".cfi_lsda":
		enc, ok := num(0)
		if !ok {
			return "bad encoding"
		}
		if enc == cfi.PEOmit {
			return ""
		}
		if len(args) != 2 {
			return "expected an encoding and a symbol"
		}
		target, why := e.framePointer(args[1], enc&cfi.PEIndirect != 0)
		if why != "" {
			return why
		}
		if st.Name == ".cfi_personality" {
			f.personality = target
		} else {
			f.lsda = target
		}
	case ".cfi_sections":
	default:
		return "this CFI directive is not supported in patch code"
	}
	return ""
}

// framePointer resolves the symbol of a personality or LSDA pointer. An
// indirect encoding points at a DW.ref.NAME variable that holds NAME's
// address; the patch points at NAME directly.
func (e *emitter) framePointer(expr string, indirect bool) (string, string) {
	expr = strings.TrimSpace(expr)
	if indirect {
		if !strings.HasPrefix(expr, "DW.ref.") {
			return "", "indirect pointer through " + expr + " is not supported"
		}
		expr = strings.TrimPrefix(expr, "DW.ref.")
	}
	id := e.p.lookup(expr)
	if id < 0 {
		id = e.p.sym(expr)
	}
	text, err := e.symbolText(id, "", -1)
	if err != nil {
		return "", err.Error()
	}
	return text, ""
}

// writeEHFrame writes the CIEs and FDEs of all patch functions.
func (e *emitter) writeEHFrame() {
	if len(e.fdes) == 0 {
		return
	}
	b := &e.eh
	b.WriteString("\t.section\t.hotpatch.eh_frame,\"\",@progbits\n\t.p2align\t3\n")
	cies := map[cieKey]string{}
	for _, f := range e.fdes {
		key := cieKey{f.personality, f.lsda != "", f.simple, f.signal}
		cie, ok := cies[key]
		if !ok {
			cie = e.label("cie")
			cies[key] = cie
			e.writeCIE(cie, key)
		}
		l := e.label("fde")
		fmt.Fprintf(b, "%s:\n\t.long\t%s.e-%s.s\n%s.s:\n\t.long\t%s.s-%s\n", l, l, l, l, l, cie)
		fmt.Fprintf(b, "\t%s\t%s\n\t%s\t%s-%s\n", e.arch.pointer, f.start, e.arch.pointer, f.end, f.start)
		if f.lsda != "" {
			fmt.Fprintf(b, "\t.uleb128\t8\n\t%s\t%s\n", e.arch.pointer, f.lsda)
		} else {
			b.WriteString("\t.uleb128\t0\n")
		}
		for _, op := range f.ops {
			b.WriteString(op)
			b.WriteByte('\n')
		}
		fmt.Fprintf(b, "\t.p2align\t3\n%s.e:\n", l)
	}
	b.WriteString("\t.long\t0\n")
}

func (e *emitter) writeCIE(l string, k cieKey) {
	a := e.arch
	b := &e.eh
	aug := "z"
	var augData []string
	if k.personality != "" {
		aug += "P"
		augData = append(augData, "\t.byte\t0", "\t"+a.pointer+"\t"+k.personality)
	}
	if k.lsda {
		aug += "L"
		augData = append(augData, "\t.byte\t0")
	}
	aug += "R"
	augData = append(augData, "\t.byte\t0")
	if k.signal {
		aug += "S"
	}
	augLen := 1 // the R encoding
	if k.personality != "" {
		augLen += 9
	}
	if k.lsda {
		augLen++
	}
	fmt.Fprintf(b, "%s:\n\t.long\t%s.e-%s.s\n%s.s:\n\t.long\t0\n\t.byte\t1\n\t.string\t\"%s\"\n", l, l, l, l, aug)
	b.WriteString(bytesLine(uleb(a.codeAlign), sleb(a.dataAlign), uleb(a.raRegister), uleb(uint64(augLen))))
	b.WriteByte('\n')
	for _, s := range augData {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if !k.simple {
		b.WriteString(bytesLine(a.initialCFI))
		b.WriteByte('\n')
	}
	fmt.Fprintf(b, "\t.p2align\t3\n%s.e:\n", l)
}
