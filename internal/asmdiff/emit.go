package asmdiff

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/asm"
)

// The writer of the patch sections (docs/augmented-assembly.md). It copies
// statements of PATCHED.s into non-allocated sections, renaming as it goes:
// local labels get the .Lhp prefix, paired symbols their ORIGINAL.s names,
// replaced functions a .hotpatch suffix, and every reference that the
// linker could only satisfy with a PLT, a GOT entry or a copy relocation is
// rewritten to a placeholder or to a slot of the patch's own.

type emitter struct {
	d    *differ
	res  *result
	o, p *model
	arch *arch

	text, rodata, except, data, bss, eh, funcs, strs, sets strings.Builder
	setDone                                                map[int32]bool

	placeholders map[string]bool
	slots        map[string]string
	slotOrder    []string
	// chunks are the local data objects patch code uses, with their
	// rewritten text once written.
	chunkText map[int32]string
	chunkWant []int32
	emitUnit  []bool
	newNames  map[int32]string
	seq       int
	fdes      []*fde
	cur       *fde
	// curUnit is the patched unit being written, or -1.
	curUnit int32
	// codeSinceCFI tells whether code was written since the last CFI
	// label.
	codeSinceCFI bool
	entries      []tableEntry
}

type tableEntry struct {
	old, new string
	flags    int
}

func (d *differ) emit(res *result, original []byte) ([]byte, error) {
	e := &emitter{
		d: d, res: res, o: d.o, p: d.p, arch: amd64,
		placeholders: map[string]bool{}, slots: map[string]string{},
		chunkText: map[int32]string{}, emitUnit: make([]bool, len(d.p.units)),
		newNames: map[int32]string{}, curUnit: -1, setDone: map[int32]bool{},
	}
	for _, ui := range res.changedUnits {
		e.emitUnit[ui] = true
	}
	for _, ui := range res.newUnits {
		e.emitUnit[ui] = true
	}
	for ui := range e.p.units {
		if e.emitUnit[ui] {
			if err := e.unit(int32(ui)); err != nil {
				return nil, err
			}
		}
	}
	for _, sp := range res.changedRO {
		if err := e.object(sp, e.o.syms[e.d.pr.p2o[sp]].name+".hotpatch", false); err != nil {
			return nil, err
		}
	}
	for _, sp := range res.newData {
		if err := e.object(sp, e.name(sp), true); err != nil {
			return nil, err
		}
	}
	for _, sp := range res.newAliases {
		if err := e.alias(sp); err != nil {
			return nil, err
		}
	}
	for len(e.chunkWant) > 0 {
		c := e.chunkWant[len(e.chunkWant)-1]
		e.chunkWant = e.chunkWant[:len(e.chunkWant)-1]
		if err := e.localChunk(c); err != nil {
			return nil, err
		}
	}
	e.writeChunks()
	e.writeTable()
	e.writeSlots()
	e.writeEHFrame()

	names := make([]string, 0, len(e.placeholders))
	for n := range e.placeholders {
		names = append(names, n)
	}
	sort.Strings(names)
	var tail strings.Builder
	for _, n := range names {
		fmt.Fprintf(&tail, "\t.weak\t%s\n\t.hidden\t%s\n", n, n)
	}
	parts := []*strings.Builder{&e.text, &e.rodata, &e.except, &e.data, &e.bss, &e.eh, &e.funcs, &e.strs, &e.sets, &tail}
	size := len(original) + len(Marker) + 2
	for _, b := range parts {
		size += b.Len()
	}
	out := make([]byte, 0, size)
	out = append(out, original...)
	if len(original) > 0 && original[len(original)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, Marker+"\n"...)
	for _, b := range parts {
		out = append(out, b.String()...)
	}
	return out, nil
}

func (e *emitter) label(kind string) string {
	e.seq++
	return fmt.Sprintf(".Lhp.%s.%d", kind, e.seq)
}

func (e *emitter) unsupported(i int32, err error, reason string) error {
	return &UnsupportedError{File: e.p.name, Line: e.p.line(i), Text: e.p.text(i), Err: err, Reason: reason}
}

// name is what a new symbol of PATCHED.s is called in the output: its own
// name, unless ORIGINAL.s mentions that name for something else, in which
// case a patch-local variant.
func (e *emitter) name(sp int32) string {
	if n, ok := e.newNames[sp]; ok {
		return n
	}
	n := e.p.syms[sp].name
	if e.o.lookup(n) >= 0 {
		n += ".hotpatch.new"
		if e.p.syms[sp].global() {
			e.res.warnings = append(e.res.warnings, "new symbol "+e.p.syms[sp].name+
				" has the name of a symbol the original file uses for something else; the patch makes it local as "+n)
		}
	}
	e.newNames[sp] = n
	return n
}

// renamedGlobal reports whether a new symbol lost its global binding to a
// collision.
func (e *emitter) renamedGlobal(sp int32) bool { return e.name(sp) != e.p.syms[sp].name }

// bindingLines declares a new symbol global or weak, and always hidden:
// global, so that other translation units of the patch find it by name;
// hidden, so that it is never exported.
func (e *emitter) bindingLines(b *strings.Builder, sp int32, name string) {
	s := &e.p.syms[sp]
	if e.renamedGlobal(sp) {
		return
	}
	switch {
	case s.bind == bindWeak || s.typ == typeUnique:
		fmt.Fprintf(b, "\t.weak\t%s\n\t.hidden\t%s\n", name, name)
	case s.bind == bindGlobal:
		fmt.Fprintf(b, "\t.globl\t%s\n\t.hidden\t%s\n", name, name)
	}
}

// unit writes a changed or new function, with its cold parts.
func (e *emitter) unit(ui int32) error {
	u := &e.p.units[ui]
	changed := e.res.isChangedUnit[ui]
	e.curUnit = ui
	defer func() { e.curUnit = -1 }()
	hotName := ""
	var ou *unit
	if changed {
		ou = &e.o.units[e.d.pr.unitP2O[ui]]
	}
	for k, pi := range u.parts {
		pt := &e.p.parts[pi]
		var def string
		switch {
		case !changed:
			def = e.name(pt.sym)
		case e.d.pr.p2o[pt.sym] >= 0:
			def = e.o.syms[e.d.pr.p2o[pt.sym]].name + ".hotpatch"
		default:
			// A cold part the original did not have.
			def = e.o.syms[ou.sym].name + strings.TrimPrefix(e.p.syms[pt.sym].name, e.p.syms[u.sym].name) + ".hotpatch"
		}
		if k == 0 {
			hotName = def
		}
		if err := e.part(pi, def, !changed); err != nil {
			return err
		}
		if changed && e.d.pr.p2o[pt.sym] >= 0 {
			flags := 0
			if pt.cold {
				flags = 1
			}
			e.entries = append(e.entries, tableEntry{old: e.o.syms[e.d.pr.p2o[pt.sym]].name, new: def, flags: flags})
		}
	}
	if changed {
		// Cold parts of the original that the new version lost are still
		// checked for threads running in them.
		for k := len(u.parts); k < len(ou.parts); k++ {
			e.entries = append(e.entries, tableEntry{old: e.o.syms[e.o.parts[ou.parts[k]].sym].name, new: hotName, flags: 1})
		}
	}
	return nil
}

// part writes one part of a function under the name def.
func (e *emitter) part(pi int32, def string, isNew bool) error {
	p := e.p
	pt := &p.parts[pi]
	b := &e.text
	if b.Len() == 0 {
		b.WriteString("\t.section\t.hotpatch.text,\"x\",@progbits\n")
	}
	if err := e.checkNumericLabels(pt); err != nil {
		return err
	}
	for _, i := range pt.stmts {
		st := &p.f.Stmts[i]
		switch st.Kind {
		case asm.Label:
			if asm.IsNumericLabel(st.Name) {
				fmt.Fprintf(b, "%s:\n", st.Name)
				continue
			}
			id := p.lookup(st.Name)
			if id < 0 {
				continue // a label nothing refers to
			}
			s := &p.syms[id]
			switch {
			case id == pt.sym:
				if isNew {
					e.bindingLines(b, id, def)
				}
				typ := "@function"
				if s.typ == typeIFunc {
					typ = "@gnu_indirect_function"
				}
				fmt.Fprintf(b, "\t.type\t%s, %s\n%s:\n", def, typ, def)
			case s.def != i:
			case s.local:
				if s.used {
					fmt.Fprintf(b, ".Lhp%s:\n", st.Name)
				}
			default:
				return e.unsupported(i, ErrConstruct, "a symbol defined inside function "+p.syms[pt.sym].name+
					" cannot be moved into patch code; define it outside the function")
			}
		case asm.Directive:
			switch asm.ClassOf(st.Name) {
			case asm.DebugLine, asm.Attribute, asm.SectionSwitch:
				continue
			case asm.CFI:
				if err := e.cfi(i, def); err != nil {
					return err
				}
				continue
			}
			if err := e.statement(b, i); err != nil {
				return err
			}
		case asm.Instruction:
			if err := e.statement(b, i); err != nil {
				return err
			}
		case asm.Assign:
			return e.unsupported(i, ErrConstruct, "an assignment inside function "+p.syms[pt.sym].name+
				" cannot be moved into patch code")
		}
	}
	if e.cur != nil {
		return e.unsupported(pt.stmts[len(pt.stmts)-1], ErrConstruct, "function "+p.syms[pt.sym].name+
			" ends inside a .cfi_startproc region")
	}
	end := e.label("end")
	fmt.Fprintf(b, "%s:\n\t.size\t%s, .-%s\n", end, def, def)
	return nil
}

// cfi handles a .cfi_* directive of patch code: it opens and closes
// frames, and encodes the rest at a label placed here.
func (e *emitter) cfi(i int32, def string) error {
	st := &e.p.f.Stmts[i]
	switch st.Name {
	case ".cfi_startproc":
		if e.cur != nil {
			return e.unsupported(i, ErrConstruct, "nested .cfi_startproc")
		}
		l := e.label("cfi")
		fmt.Fprintf(&e.text, "%s:\n", l)
		e.codeSinceCFI = false
		e.cur = &fde{start: l, lastLabel: l, cfaOffset: 8, simple: strings.TrimSpace(st.Args) == "simple",
			startLine: int(st.Line)}
		if e.cur.simple {
			e.cur.cfaOffset = 0
		}
		return nil
	case ".cfi_endproc":
		if e.cur == nil {
			return e.unsupported(i, ErrConstruct, ".cfi_endproc without .cfi_startproc")
		}
		l := e.label("cfi")
		fmt.Fprintf(&e.text, "%s:\n", l)
		e.cur.end = l
		e.fdes = append(e.fdes, e.cur)
		e.cur = nil
		return nil
	case ".cfi_sections":
		return nil
	}
	if e.cur == nil {
		return e.unsupported(i, ErrConstruct, "CFI directive outside .cfi_startproc")
	}
	l := e.cur.lastLabel
	switch st.Name {
	case ".cfi_personality", ".cfi_lsda", ".cfi_signal_frame":
	default:
		// Directives with no code between them apply at one place.
		if e.codeSinceCFI || l == "" {
			l = e.label("cfi")
			fmt.Fprintf(&e.text, "%s:\n", l)
			e.codeSinceCFI = false
		}
	}
	if why := e.cfiDirective(e.cur, st, l); why != "" {
		return e.unsupported(i, ErrConstruct, why)
	}
	return nil
}

// checkNumericLabels makes sure every "1b" or "2f" of inline assembly finds
// its label inside the part, where the copy will have it too.
func (e *emitter) checkNumericLabels(pt *part) error {
	p := e.p
	defs := map[string][]int{}
	for k, i := range pt.stmts {
		st := &p.f.Stmts[i]
		if st.Kind == asm.Label && asm.IsNumericLabel(st.Name) {
			defs[st.Name] = append(defs[st.Name], k)
		}
	}
	for k, i := range pt.stmts {
		st := &p.f.Stmts[i]
		if st.Kind != asm.Instruction && !(st.Kind == asm.Directive && asm.ClassOf(st.Name) == asm.Data) {
			continue
		}
		for _, ref := range numericRefs(st.Args) {
			n, dir := ref[:len(ref)-1], ref[len(ref)-1]
			at := defs[n] // positions, in increasing order
			found := len(at) > 0 && (dir == 'b' && at[0] < k || dir == 'f' && at[len(at)-1] > k)
			if !found {
				return e.unsupported(i, ErrConstruct, "local label "+ref+" refers outside the function, "+
					"which the copy in patch code cannot reach")
			}
		}
	}
	return nil
}

// numericRefs finds references such as "1b" and "2f" in operand text.
func numericRefs(args string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		c := args[i]
		if c < '0' || c > '9' || i > 0 && isIdent(args[i-1]) {
			continue
		}
		j := i
		for j < len(args) && args[j] >= '0' && args[j] <= '9' {
			j++
		}
		if j < len(args) && (args[j] == 'b' || args[j] == 'f') && (j+1 == len(args) || !isIdent(args[j+1])) {
			out = append(out, args[i:j+1])
		}
		i = j
	}
	return out
}

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '$'
}

// statement writes an instruction or a directive with its references
// rewritten.
func (e *emitter) statement(b *strings.Builder, i int32) error {
	st := &e.p.f.Stmts[i]
	if b == &e.text {
		e.codeSinceCFI = true
	}
	b.WriteByte('\t')
	b.WriteString(st.Name)
	if st.Args == "" {
		b.WriteByte('\n')
		return nil
	}
	b.WriteByte('\t')
	pos := int32(0)
	for _, r := range e.p.stmtRefs(i) {
		b.WriteString(st.Args[pos:r.Off])
		text, err := e.symbolText(r.sym, r.Modifier(st.Args), i)
		if err != nil {
			return err
		}
		b.WriteString(text)
		pos = r.End()
	}
	b.WriteString(st.Args[pos:])
	b.WriteByte('\n')
	return nil
}

// symbolText returns what a reference to patched symbol sp, with its
// relocation modifier, becomes in patch code (§3 and §4 of the contract).
func (e *emitter) symbolText(sp int32, mod string, i int32) (string, error) {
	p, o := e.p, e.o
	sp = resolveLocal(p, sp)
	s := &p.syms[sp]
	fail := func(err error, reason string) (string, error) {
		if i < 0 {
			return "", errors.New(reason)
		}
		return "", e.unsupported(i, err, reason)
	}
	if s.local {
		switch {
		case s.def < 0 && s.alias >= 0:
			if err := e.localAlias(sp, i); err != nil {
				return "", err
			}
		case !s.defined():
			return fail(ErrConstruct, "local label "+s.name+" is not defined in the file")
		case s.unit >= 0:
			if !e.emitUnit[s.unit] {
				return fail(ErrConstruct, "local label "+s.name+" lies inside function "+
					p.syms[p.units[s.unit].sym].name+", which the patch does not replace")
			}
		case s.chunk >= 0 || s.inChunk >= 0:
			c := s.chunk
			if c < 0 {
				c = s.inChunk
			}
			if mod != "" && actionOf(mod) != relocPlain {
				return fail(ErrRelocation, "relocation @"+mod+" against local label "+s.name)
			}
			if name := e.d.inPlace(sp, c); name != "" {
				return name + modSuffix(mod), nil
			}
			if cls := sectionClass(&p.f.Sections[p.chunks[c].sec]); cls == 't' {
				return fail(ErrConstruct, "patch code refers to new or changed thread-local data without a name ("+
					s.name+"), which a patch cannot add to running threads; give the object a name and keep it unchanged")
			}
			// New or changed: gcc never writes to the objects it
			// leaves unnamed (literals, initialisers it copies), so the
			// patch carries its own copy, writable ones in patch data.
			e.wantChunk(c)
		default:
			return fail(ErrConstruct, "local label "+s.name+" lies outside any function or object")
		}
		if mod != "" && actionOf(mod) != relocPlain {
			return fail(ErrRelocation, "relocation @"+mod+" against local label "+s.name)
		}
		return ".Lhp" + s.name + modSuffix(mod), nil
	}
	if s.name == "_GLOBAL_OFFSET_TABLE_" {
		return fail(ErrRelocation, "patch code cannot use the GOT base (_GLOBAL_OFFSET_TABLE_): build with "+
			"the default small code model (no -mcmodel=large)")
	}
	var name string
	// origGlobal: a global of the original object, which the patch
	// reaches through a placeholder as the original code reaches it
	// through the PLT or GOT, so that interposition still holds.
	var origGlobal, external bool
	switch so := e.d.pr.p2o[sp]; {
	case s.defined() && so >= 0:
		name = o.syms[so].name
		if e.res.isChangedRO[sp] {
			name += ".hotpatch"
		} else {
			origGlobal = o.syms[so].global()
		}
	case s.defined():
		name = e.name(sp)
		if s.typ == typeIFunc {
			// A new ifunc: the link cannot carry the ifunc type into
			// a section that is not allocated, so references name it
			// through a placeholder that tells extraction
			// (docs/augmented-assembly.md §4).
			ph := e.placeholder("hotpatch.ifunc." + name)
			switch actionOf(mod) {
			case relocPlain:
				return ph, nil
			case relocPLT:
				return ph + "@PLT", nil
			case relocGOT:
				return e.slot(".Lhp.got."+name, "\t"+e.arch.pointer+"\t"+ph+"\n"), nil
			}
		}
	default:
		name = s.name
		external = true
	}
	viaPlaceholder := external || origGlobal
	switch actionOf(mod) {
	case relocPlain:
		if external {
			return e.placeholder("hotpatch.ext." + name), nil
		}
		return name, nil
	case relocPLT:
		if viaPlaceholder {
			return e.placeholder("hotpatch.ext."+name) + "@PLT", nil
		}
		return name, nil
	case relocGOT:
		target := name
		if viaPlaceholder {
			target = e.placeholder("hotpatch.ext." + name)
		}
		return e.slot(".Lhp.got."+name, "\t"+e.arch.pointer+"\t"+target+"\n"), nil
	case relocTPOFFGOT:
		return e.slot(".Lhp.tpoff."+name, "\t"+e.arch.pointer+"\t"+e.placeholder("hotpatch.tpoff."+name)+"\n"), nil
	case relocTLSGD:
		return e.slot(".Lhp.tlsgd."+name, "\t"+e.arch.pointer+"\t"+e.placeholder("hotpatch.dtpmod."+name)+
			"\n\t"+e.arch.pointer+"\t"+e.placeholder("hotpatch.dtpoff."+name)+"\n"), nil
	case relocTLSLD:
		return e.slot(".Lhp.tlsld."+name, "\t"+e.arch.pointer+"\t"+e.placeholder("hotpatch.dtpmod."+name)+
			"\n\t"+e.arch.pointer+"\t0\n"), nil
	case relocKeep:
		return name + "@" + mod, nil
	}
	return fail(ErrRelocation, "relocation @"+mod+" cannot be carried into patch code (hotpatch supports "+
		"@PLT, @GOTPCREL, @gottpoff, @tlsgd, @tlsld, @tpoff and @dtpoff); build without -mcmodel=large "+
		"and with the default TLS dialect")
}

func actionOf(mod string) relocAction {
	if a, ok := amd64.relocs[strings.ToLower(mod)]; ok {
		return a
	}
	return relocUnsupported
}

func modSuffix(mod string) string {
	if mod == "" {
		return ""
	}
	return "@" + mod
}

func (e *emitter) placeholder(name string) string {
	e.placeholders[name] = true
	return name
}

func (e *emitter) slot(name, body string) string {
	if _, ok := e.slots[name]; !ok {
		e.slots[name] = body
		e.slotOrder = append(e.slotOrder, name)
	}
	return name
}

// localAlias defines a local label that gcc set to an expression, such
// as ".set .LC13,.LC284+8" (a constant inside another), under its patch
// name.
func (e *emitter) localAlias(sp, i int32) error {
	if e.setDone[sp] {
		return nil
	}
	e.setDone[sp] = true
	s := &e.p.syms[sp]
	text, err := e.expression(s.aliasExpr, i)
	if err != nil {
		return err
	}
	fmt.Fprintf(&e.sets, "\t.set\t.Lhp%s, %s\n", s.name, text)
	return nil
}

// expression rewrites the references of an expression.
func (e *emitter) expression(expr string, i int32) (string, error) {
	refs := exprRefs(e.p, expr)
	if refs == nil && len(asm.Refs(expr, nil)) > 0 {
		return "", e.unsupported(i, ErrConstruct, "unknown symbol in "+expr)
	}
	var b strings.Builder
	pos := int32(0)
	for _, r := range refs {
		b.WriteString(expr[pos:r.Off])
		text, err := e.symbolText(r.sym, r.Modifier(expr), i)
		if err != nil {
			return "", err
		}
		b.WriteString(text)
		pos = r.End()
	}
	b.WriteString(expr[pos:])
	return b.String(), nil
}

func (e *emitter) wantChunk(c int32) {
	if _, ok := e.chunkText[c]; ok {
		return
	}
	e.chunkText[c] = ""
	e.chunkWant = append(e.chunkWant, c)
}

// localChunk rewrites a local data object (literal, jump table, LSDA).
func (e *emitter) localChunk(c int32) error {
	var b strings.Builder
	if err := e.chunkBody(&b, c, ".Lhp"+e.p.syms[e.p.chunks[c].sym].name, -1, ""); err != nil {
		return err
	}
	e.chunkText[c] = b.String()
	return nil
}

// chunkBody writes a data object: its alignment, its label (with the
// declarations of a named object), and its contents.
func (e *emitter) chunkBody(b *strings.Builder, c int32, label string, sp int32, typ string) error {
	p := e.p
	ch := &p.chunks[c]
	for _, i := range ch.prefix {
		if err := e.statement(b, i); err != nil {
			return err
		}
	}
	if sp >= 0 {
		fmt.Fprintf(b, "\t.type\t%s, %s\n", label, typ)
	}
	fmt.Fprintf(b, "%s:\n", label)
	for _, i := range ch.stmts[1:] {
		st := &p.f.Stmts[i]
		switch st.Kind {
		case asm.Label:
			if asm.IsNumericLabel(st.Name) {
				fmt.Fprintf(b, "%s:\n", st.Name)
				continue
			}
			if !asm.IsLocalLabel(st.Name) {
				return e.unsupported(i, ErrConstruct, "a symbol defined inside object "+p.syms[ch.sym].name)
			}
			fmt.Fprintf(b, ".Lhp%s:\n", st.Name)
		case asm.Directive:
			switch asm.ClassOf(st.Name) {
			case asm.DebugLine, asm.Attribute, asm.SectionSwitch, asm.CFI:
				continue
			}
			if err := e.statement(b, i); err != nil {
				return err
			}
		case asm.Instruction:
			if err := e.statement(b, i); err != nil {
				return err
			}
		case asm.Assign:
			return e.unsupported(i, ErrConstruct, "an assignment inside a data object")
		}
	}
	if sp >= 0 {
		fmt.Fprintf(b, "\t.size\t%s, .-%s\n", label, label)
	}
	return nil
}

// object writes a named data object of PATCHED.s: a new variable, or the
// new contents of a read-only object.
func (e *emitter) object(sp int32, name string, isNew bool) error {
	p := e.p
	s := &p.syms[sp]
	if s.common >= 0 {
		return e.common(sp, name)
	}
	ch := &p.chunks[s.chunk]
	sec := &p.f.Sections[ch.sec]
	b := e.dataSection(sec)
	typ := "@object"
	if s.typ == typeFunc {
		typ = "@function"
	}
	var body strings.Builder
	if isNew {
		e.bindingLines(&body, sp, name)
	}
	if err := e.chunkBody(&body, s.chunk, name, sp, typ); err != nil {
		return err
	}
	b.WriteString(body.String())
	return nil
}

// common turns a .comm or .lcomm of a new variable into storage in
// .hotpatch.bss.
func (e *emitter) common(sp int32, name string) error {
	p := e.p
	i := p.syms[sp].common
	args := asm.SplitArgs(p.f.Stmts[i].Args)
	if len(args) < 2 {
		return e.unsupported(i, ErrConstruct, "a common symbol without a size")
	}
	b := &e.bss
	if b.Len() == 0 {
		b.WriteString("\t.section\t.hotpatch.bss,\"w\",@nobits\n")
	}
	if len(args) >= 3 && args[2] != "" {
		fmt.Fprintf(b, "\t.balign\t%s\n", args[2])
	}
	e.bindingLines(b, sp, name)
	fmt.Fprintf(b, "\t.type\t%s, @object\n%s:\n\t.zero\t%s\n\t.size\t%s, .-%s\n", name, name, args[1], name, name)
	return nil
}

// dataSection picks the patch section for data from an original section.
func (e *emitter) dataSection(sec *asm.Section) *strings.Builder {
	switch {
	case strings.HasPrefix(sec.Name, ".gcc_except_table"):
		if e.except.Len() == 0 {
			e.except.WriteString("\t.section\t.hotpatch.gcc_except_table,\"\",@progbits\n")
		}
		return &e.except
	case sectionClass(sec) == 'b':
		if e.bss.Len() == 0 {
			e.bss.WriteString("\t.section\t.hotpatch.bss,\"w\",@nobits\n")
		}
		return &e.bss
	case sectionClass(sec) == 'w':
		if e.data.Len() == 0 {
			e.data.WriteString("\t.section\t.hotpatch.data,\"w\",@progbits\n")
		}
		return &e.data
	}
	if e.rodata.Len() == 0 {
		e.rodata.WriteString("\t.section\t.hotpatch.rodata,\"\",@progbits\n")
	}
	return &e.rodata
}

func (e *emitter) alias(sp int32) error {
	p := e.p
	s := &p.syms[sp]
	target, err := e.expression(s.aliasExpr, s.alias)
	if err != nil {
		return err
	}
	name := e.name(sp)
	b := &e.sets
	e.bindingLines(b, sp, name)
	fmt.Fprintf(b, "\t.set\t%s, %s\n", name, target)
	if s.typ == typeIFunc {
		// The ifunc type cannot be carried (see hotpatch.ifunc); this
		// local marker tells extraction, also for references from
		// other translation units.
		fmt.Fprintf(b, "\t.set\thotpatch.ifunc.def.%s, %s\n", name, name)
	}
	return nil
}

// writeChunks writes the local data objects in file order, so that the
// output does not depend on the order they were found in.
func (e *emitter) writeChunks() {
	ids := make([]int32, 0, len(e.chunkText))
	for c := range e.chunkText {
		ids = append(ids, c)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, c := range ids {
		b := e.dataSection(&e.p.f.Sections[e.p.chunks[c].sec])
		b.WriteString(e.chunkText[c])
	}
}

func (e *emitter) writeSlots() {
	if len(e.slotOrder) == 0 {
		return
	}
	b := &e.data
	if b.Len() == 0 {
		b.WriteString("\t.section\t.hotpatch.data,\"w\",@progbits\n")
	}
	b.WriteString("\t.p2align\t3\n")
	for _, n := range e.slotOrder {
		fmt.Fprintf(b, "%s:\n%s", n, e.slots[n])
	}
}

func (e *emitter) writeTable() {
	if len(e.entries) == 0 {
		return
	}
	e.funcs.WriteString("\t.section\t.hotpatch.funcs,\"\",@progbits\n\t.p2align\t3\n")
	e.strs.WriteString("\t.section\t.hotpatch.strs,\"\",@progbits\n")
	ptr := e.arch.pointer
	for _, t := range e.entries {
		l := e.label("name")
		fmt.Fprintf(&e.funcs, "\t%s\t%s\n\t%s\t%s\n\t%s\t%s\n\t%s\t%d\n", ptr, t.old, ptr, t.new, ptr, l, ptr, t.flags)
		fmt.Fprintf(&e.strs, "%s:\n\t.string\t%q\n", l, t.old)
	}
}
