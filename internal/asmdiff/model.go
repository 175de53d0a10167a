package asmdiff

import (
	"strings"

	"github.com/hotpatch/hotpatch/internal/asm"
)

// The model of one assembly file: its symbols, the functions cut into
// parts, and the data objects ("chunks") of its allocated data sections.
// Everything refers to symbols by index, so that comparing two files is
// integer work.

type symType uint8

const (
	typeNone symType = iota
	typeFunc
	typeObject
	typeTLS
	typeUnique
	typeIFunc
	typeOther
)

type binding uint8

const (
	bindLocal binding = iota
	bindGlobal
	bindWeak
)

type symbol struct {
	name string
	// local is set for assembler-local labels (.L...).
	local bool
	// def is the statement that defines the label, or -1.
	def int32
	sec int32
	typ symType
	// typeStmt is the .type statement, for messages; -1 when none.
	typeStmt int32
	bind     binding
	// explicitLocal is set by a .local directive.
	explicitLocal bool
	visibility    string
	// sizeStmt is the .size statement, or -1.
	sizeStmt int32
	// common is the .comm or .lcomm statement, or -1.
	common int32
	// alias is the .set/.equ/= statement, or -1; aliasExpr is the
	// expression it stands for, and aliasOf its target when the
	// expression is a lone symbol, else -1.
	alias     int32
	aliasOf   int32
	aliasExpr string
	// used is set when a statement outside the debug sections uses the
	// symbol: an instruction operand, data, a CFI pointer, an alias.
	used bool
	// usedElsewhere is set when a use sits in a section other than the
	// symbol's own.
	usedElsewhere bool
	// usedPlainly is set when a use is not a label difference in the
	// symbol's own section: such labels head data objects.
	usedPlainly bool

	unit  int32 // the unit the label lies in, or -1
	part  int32 // the part (index into model.parts) it heads, or -1
	chunk int32 // the data chunk it heads, or -1
	// inChunk is the chunk an inner label lies in, or -1.
	inChunk int32
}

// ref is one symbol reference inside a statement's Args.
type ref struct {
	asm.Ref
	sym int32
}

// part is a contiguous run of one function in one section: the function
// itself, or its .cold part. stmts are statement indices in the order of
// the section, from the first statement of the prologue (alignment, labels
// that mark the start) to the .size directive.
type part struct {
	sym   int32
	sec   int32
	stmts []int32
	// label is the position of the part's own label within stmts.
	label int
	// sig are the statements that count when comparing.
	sig []int32
	// cold is set for a .cold part.
	cold bool
	unit int32
}

// unit is a function with its cold parts: what is compared and replaced
// as a whole, because its parts jump into each other by local labels.
type unit struct {
	sym    int32
	parts  []int32 // parts[0] is the function itself
	family string
	// init is set for functions that only static initialisation runs.
	init bool
}

// chunk is a data object: a label in a data section and what follows it
// up to the next object.
type chunk struct {
	sym int32
	sec int32
	// prefix holds the alignment directives before the label.
	prefix []int32
	// stmts are the label and its content.
	stmts []int32
	sig   []int32
}

type model struct {
	f    *asm.File
	name string

	syms  []symbol
	symID map[string]int32

	// refs of statement i are refs[refStart[i]:refStart[i+1]].
	refs     []ref
	refStart []int32

	secStmts [][]int32
	parts    []part
	units    []unit
	chunks   []chunk
	// loose are data statements in allocated sections that belong to no
	// object, such as .init_array entries, by section.
	loose map[int32][]int32

	// unitOf maps a function symbol to its unit.
	unitOf map[int32]int32
}

func (m *model) sym(name string) int32 {
	if id, ok := m.symID[name]; ok {
		return id
	}
	id := int32(len(m.syms))
	m.syms = append(m.syms, symbol{
		name: name, local: asm.IsLocalLabel(name), def: -1, sec: -1, typeStmt: -1,
		sizeStmt: -1, common: -1, alias: -1, aliasOf: -1, unit: -1, part: -1, chunk: -1, inChunk: -1,
	})
	m.symID[name] = id
	return id
}

func (m *model) lookup(name string) int32 {
	if id, ok := m.symID[name]; ok {
		return id
	}
	return -1
}

func (m *model) stmtRefs(i int32) []ref { return m.refs[m.refStart[i]:m.refStart[i+1]] }

// defined reports whether the file defines the symbol: a label, a common
// or an alias.
func (s *symbol) defined() bool { return s.def >= 0 || s.common >= 0 || s.alias >= 0 }

func (s *symbol) global() bool { return s.bind != bindLocal }

func buildModel(f *asm.File, name string) *model {
	m := &model{f: f, name: name, symID: make(map[string]int32, len(f.Stmts)/8+16)}
	m.refStart = make([]int32, len(f.Stmts)+1)
	m.secStmts = make([][]int32, len(f.Sections))
	m.loose = map[int32][]int32{}
	m.unitOf = map[int32]int32{}
	var scratch []asm.Ref
	var localDefs []int32
	for i := range f.Stmts {
		st := &f.Stmts[i]
		m.refStart[i] = int32(len(m.refs))
		if f.Sections[st.Section].Debug() {
			continue
		}
		m.secStmts[st.Section] = append(m.secStmts[st.Section], int32(i))
		switch st.Kind {
		case asm.Label:
			if asm.IsNumericLabel(st.Name) {
				continue
			}
			if asm.IsLocalLabel(st.Name) {
				// Most local labels are for the debug sections
				// only (.LVL, .LBB, .LVU): they get a symbol only
				// if something else refers to them, once all
				// references are known.
				localDefs = append(localDefs, int32(i))
				continue
			}
			m.define(m.sym(st.Name), int32(i))
		case asm.Instruction:
			scratch = m.addRefs(int32(i), st.Args, scratch, true)
		case asm.Assign:
			m.alias(int32(i), st.Name, st.Args)
			scratch = m.addRefs(int32(i), st.Args, scratch, true)
		case asm.Directive:
			switch asm.ClassOf(st.Name) {
			case asm.Data:
				scratch = m.addRefs(int32(i), st.Args, scratch, true)
			case asm.Attribute:
				m.attribute(int32(i), st)
				scratch = m.addRefs(int32(i), st.Args, scratch, false)
			case asm.CFI:
				if st.Name == ".cfi_personality" || st.Name == ".cfi_lsda" {
					scratch = m.addRefs(int32(i), st.Args, scratch, true)
				}
			case asm.Align, asm.DebugLine, asm.SectionSwitch:
			default:
				switch st.Name {
				case ".comm", ".lcomm":
					s := &m.syms[m.sym(asm.FirstArg(st.Args))]
					s.common = int32(i)
					if st.Name == ".comm" && !s.explicitLocal {
						s.bind = bindGlobal
					}
					scratch = m.addRefs(int32(i), st.Args, scratch, false)
				case ".set", ".equ", ".equiv", ".eqv", ".weakref":
					args := asm.SplitArgs(st.Args)
					if len(args) == 2 {
						m.alias(int32(i), args[0], args[1])
					}
					scratch = m.addRefs(int32(i), st.Args, scratch, true)
				case ".ident", ".cfi_sections", ".addrsig", ".addrsig_sym":
				default:
					scratch = m.addRefs(int32(i), st.Args, scratch, true)
				}
			}
		}
	}
	m.refStart[len(f.Stmts)] = int32(len(m.refs))
	for _, i := range localDefs {
		if id := m.lookup(f.Stmts[i].Name); id >= 0 {
			m.define(id, i)
		}
	}
	m.markUses()
	m.cutFunctions()
	m.cutData()
	m.findInitFunctions()
	return m
}

func (m *model) define(id, i int32) {
	if s := &m.syms[id]; s.def < 0 {
		s.def, s.sec = i, m.f.Stmts[i].Section
	}
}

// addRefs records the references in args. A use (as opposed to a mention
// in .globl or .size) marks the symbol as used.
func (m *model) addRefs(i int32, args string, scratch []asm.Ref, use bool) []asm.Ref {
	scratch = asm.Refs(args, scratch[:0])
	for _, r := range scratch {
		id := m.sym(r.Name(args))
		m.refs = append(m.refs, ref{Ref: r, sym: id})
		if use {
			m.syms[id].used = true
		}
	}
	return scratch
}

func (m *model) alias(i int32, name, expr string) {
	s := m.sym(strings.TrimSpace(name))
	m.syms[s].alias = i
	expr = strings.TrimSpace(expr)
	m.syms[s].aliasExpr = expr
	if r := asm.Refs(expr, nil); len(r) == 1 && r[0].Off == 0 && r[0].Len == int32(len(expr)) {
		m.syms[s].aliasOf = m.sym(expr)
	}
}

func (m *model) attribute(i int32, st *asm.Stmt) {
	switch st.Name {
	case ".globl", ".global", ".weak", ".local", ".hidden", ".protected", ".internal":
		for _, a := range asm.SplitArgs(st.Args) {
			s := &m.syms[m.sym(a)]
			switch st.Name {
			case ".globl", ".global":
				if s.bind != bindWeak {
					s.bind = bindGlobal
				}
			case ".weak":
				s.bind = bindWeak
			case ".local":
				s.bind, s.explicitLocal = bindLocal, true
			default:
				s.visibility = st.Name[1:]
			}
		}
	case ".type":
		args := asm.SplitArgs(st.Args)
		if len(args) < 2 {
			return
		}
		s := &m.syms[m.sym(args[0])]
		s.typeStmt = i
		switch strings.TrimLeft(args[1], "@%\"") {
		case "function", "function\"", "STT_FUNC":
			s.typ = typeFunc
		case "object", "STT_OBJECT":
			s.typ = typeObject
		case "tls_object", "STT_TLS":
			s.typ = typeTLS
		case "gnu_unique_object":
			s.typ = typeUnique
		case "gnu_indirect_function", "STT_GNU_IFUNC":
			s.typ = typeIFunc
		default:
			s.typ = typeOther
		}
	case ".size":
		s := &m.syms[m.sym(asm.FirstArg(st.Args))]
		if s.sizeStmt < 0 {
			s.sizeStmt = i
		}
	}
}

// markUses finds, for every used label, whether a use lies in another
// section and whether a use is anything but a label difference in the
// label's own section.
func (m *model) markUses() {
	for i := range m.f.Stmts {
		refs := m.stmtRefs(int32(i))
		if len(refs) == 0 {
			continue
		}
		st := &m.f.Stmts[i]
		use := st.Kind != asm.Directive || asm.ClassOf(st.Name) != asm.Attribute && st.Name != ".comm" && st.Name != ".lcomm"
		if !use {
			continue
		}
		difference := st.Kind == asm.Directive && asm.ClassOf(st.Name) == asm.Data && strings.IndexByte(st.Args, '-') >= 0
		for _, r := range refs {
			s := &m.syms[r.sym]
			if s.sec != st.Section {
				s.usedElsewhere = true
				s.usedPlainly = true
			} else if !difference {
				s.usedPlainly = true
			}
		}
	}
}

func (m *model) isNamedLabel(i int32) bool {
	st := &m.f.Stmts[i]
	return st.Kind == asm.Label && !asm.IsNumericLabel(st.Name) && !asm.IsLocalLabel(st.Name)
}

// cutFunctions cuts every executable section into parts. A part starts at
// a named label and ends at the .size directive of that label; without
// one, at the next function.
func (m *model) cutFunctions() {
	for sec, list := range m.secStmts {
		if !m.f.Sections[sec].Exec() {
			continue
		}
		prevEnd := -1
		for k := 0; k < len(list); k++ {
			i := list[k]
			if !m.isNamedLabel(i) {
				continue
			}
			symID := m.lookup(m.f.Stmts[i].Name)
			if m.syms[symID].def != i {
				continue
			}
			end := m.partEnd(list, k, symID)
			start := m.prologueStart(list, k, prevEnd)
			p := part{sym: symID, sec: int32(sec), stmts: list[start : end+1], label: k - start, unit: -1}
			p.cold = isColdName(m.syms[symID].name)
			m.syms[symID].part = int32(len(m.parts))
			m.parts = append(m.parts, p)
			prevEnd = end
			k = end
		}
	}
	// Units: each function with its cold parts, in file order.
	for pi := range m.parts {
		p := &m.parts[pi]
		if p.cold {
			continue
		}
		u := unit{sym: p.sym, parts: []int32{int32(pi)}, family: familyOf(m.syms[p.sym].name)}
		p.unit = int32(len(m.units))
		m.unitOf[p.sym] = p.unit
		m.units = append(m.units, u)
	}
	for pi := range m.parts {
		p := &m.parts[pi]
		if !p.cold {
			continue
		}
		parent := m.lookup(coldParent(m.syms[p.sym].name))
		if parent >= 0 && m.syms[parent].part >= 0 && !m.parts[m.syms[parent].part].cold {
			u := m.parts[m.syms[parent].part].unit
			p.unit = u
			m.units[u].parts = append(m.units[u].parts, int32(pi))
			m.unitOf[p.sym] = u
			continue
		}
		// A cold part whose parent is not in this file is a function of
		// its own.
		u := unit{sym: p.sym, parts: []int32{int32(pi)}, family: familyOf(m.syms[p.sym].name)}
		p.unit = int32(len(m.units))
		m.unitOf[p.sym] = p.unit
		m.units = append(m.units, u)
	}
	for pi := range m.parts {
		p := &m.parts[pi]
		for _, i := range p.stmts {
			st := &m.f.Stmts[i]
			if st.Kind == asm.Label && !asm.IsNumericLabel(st.Name) {
				if id := m.lookup(st.Name); id >= 0 && m.syms[id].def == i {
					m.syms[id].unit = p.unit
				}
			}
		}
		p.sig = m.significant(p.stmts, nil)
	}
}

// partEnd returns the position in list of the .size directive of sym,
// searching from position k; without one, the last statement before the
// next function.
func (m *model) partEnd(list []int32, k int, sym int32) int {
	symHasType := m.syms[sym].typ == typeFunc
	for j := k + 1; j < len(list); j++ {
		st := &m.f.Stmts[list[j]]
		switch st.Kind {
		case asm.Directive:
			if st.Name == ".size" && m.lookup(asm.FirstArg(st.Args)) == sym {
				return j
			}
		case asm.Label:
			if m.isNamedLabel(list[j]) {
				other := m.lookup(st.Name)
				if m.syms[other].def == list[j] && (m.syms[other].typ == typeFunc || !symHasType) {
					return j - 1
				}
			}
		}
	}
	return len(list) - 1
}

// prologueStart walks back from the label at position k over what
// prepares it: alignment, marker labels, symbol attributes, CFI and line
// directives. It stops at anything that emits bytes or ends another
// function.
func (m *model) prologueStart(list []int32, k, prevEnd int) int {
	start := k
	for j := k - 1; j > prevEnd; j-- {
		st := &m.f.Stmts[list[j]]
		ok := false
		switch st.Kind {
		case asm.Label:
			ok = asm.IsLocalLabel(st.Name)
		case asm.Directive:
			switch asm.ClassOf(st.Name) {
			case asm.Align, asm.DebugLine, asm.SectionSwitch:
				ok = true
			case asm.Attribute:
				ok = st.Name != ".size"
			case asm.CFI:
				ok = st.Name != ".cfi_endproc"
			}
		}
		if !ok {
			break
		}
		start = j
	}
	return start
}

// significant filters statements to those that decide what the code does:
// instructions, data, alignment, CFI, unknown directives, and the labels
// that something outside the debug sections refers to.
func (m *model) significant(stmts []int32, dst []int32) []int32 {
	for _, i := range stmts {
		st := &m.f.Stmts[i]
		switch st.Kind {
		case asm.Label:
			if asm.IsNumericLabel(st.Name) {
				dst = append(dst, i)
				continue
			}
			if id := m.lookup(st.Name); id >= 0 && (m.syms[id].used || !m.syms[id].local) {
				dst = append(dst, i)
			}
		case asm.Directive:
			switch asm.ClassOf(st.Name) {
			case asm.DebugLine, asm.Attribute, asm.SectionSwitch:
			default:
				if st.Name == ".comm" || st.Name == ".lcomm" {
					continue
				}
				dst = append(dst, i)
			}
		default:
			dst = append(dst, i)
		}
	}
	return dst
}

// cutData cuts the allocated, non-executable sections into chunks. A chunk
// starts at a label that heads an object: a named symbol, or a local label
// that something uses plainly (code loads it, a pointer points at it). A
// local label that is only used in label differences within its own
// section, as in the call-site table of an LSDA, lies inside the chunk
// before it. Alignment directives after an object's last byte belong to
// the next object.
func (m *model) cutData() {
	type open struct {
		id                            int32
		prefixFrom, labelPos, lastPos int
	}
	for sec, list := range m.secStmts {
		s := &m.f.Sections[sec]
		if s.Exec() || s.Debug() || !s.Alloc() && !strings.HasPrefix(s.Name, ".gcc_except_table") {
			continue
		}
		var chunks []open
		var loose []int32
		pending := 0 // where statements not yet given to an object start
		for k := 0; k < len(list); k++ {
			i := list[k]
			st := &m.f.Stmts[i]
			if st.Kind == asm.Label && !asm.IsNumericLabel(st.Name) {
				id := m.lookup(st.Name)
				if id < 0 {
					if len(chunks) > 0 {
						goto content // an unused inner label
					}
					// An unused label still heads what follows it,
					// which is data of its own and not loose.
					id = m.sym(st.Name)
					m.define(id, i)
				}
				sy := &m.syms[id]
				if sy.def == i && (!sy.local || sy.usedPlainly || len(chunks) == 0) {
					chunks = append(chunks, open{id: id, prefixFrom: pending, labelPos: k, lastPos: k})
					pending = k + 1
					continue
				}
			}
		content:
			if !isContent(st) {
				continue
			}
			if len(chunks) == 0 {
				loose = append(loose, i)
			} else {
				chunks[len(chunks)-1].lastPos = k
			}
			pending = k + 1
		}
		for _, o := range chunks {
			c := chunk{sym: o.id, sec: int32(sec)}
			for _, i := range list[o.prefixFrom:o.labelPos] {
				if m.f.Stmts[i].Kind == asm.Directive && asm.ClassOf(m.f.Stmts[i].Name) == asm.Align {
					c.prefix = append(c.prefix, i)
				}
			}
			c.stmts = list[o.labelPos : o.lastPos+1]
			c.sig = m.significant(c.stmts[1:], nil)
			id := int32(len(m.chunks))
			m.syms[o.id].chunk = id
			for _, i := range c.stmts[1:] {
				st := &m.f.Stmts[i]
				if st.Kind == asm.Label && !asm.IsNumericLabel(st.Name) {
					if l := m.lookup(st.Name); l >= 0 {
						m.syms[l].inChunk = id
					}
				}
			}
			m.chunks = append(m.chunks, c)
		}
		if len(loose) > 0 {
			m.loose[int32(sec)] = loose
		}
	}
}

// isContent reports whether a statement in a data section is part of an
// object's contents: bytes, inner labels, and directives the differ does
// not know, which it keeps with the object so that they are compared.
func isContent(st *asm.Stmt) bool {
	switch st.Kind {
	case asm.Label, asm.Instruction:
		return true
	case asm.Directive:
		switch asm.ClassOf(st.Name) {
		case asm.Data:
			return true
		case asm.Other:
			switch st.Name {
			case ".comm", ".lcomm", ".ident", ".set", ".equ", ".equiv", ".eqv", ".weakref":
				return false
			}
			return true
		}
	}
	return false
}

// findInitFunctions marks the functions that only static initialisation
// and finalisation run: those the init and fini arrays point to, and local
// functions that only they call.
func (m *model) findInitFunctions() {
	for sec, list := range m.loose {
		if !isInitSection(m.f.Sections[sec].Name) {
			continue
		}
		for _, i := range list {
			for _, r := range m.stmtRefs(i) {
				if u, ok := m.unitOf[r.sym]; ok {
					m.units[u].init = true
				}
			}
		}
	}
	// Local functions called from init functions only, found by
	// propagation: a function becomes init when its last caller does.
	callers := make([]map[int32]bool, len(m.units))
	for ui := range m.units {
		for _, pi := range m.units[ui].parts {
			for _, i := range m.parts[pi].stmts {
				for _, r := range m.stmtRefs(i) {
					u, ok := m.unitOf[r.sym]
					if !ok || u == int32(ui) {
						continue
					}
					if callers[u] == nil {
						callers[u] = map[int32]bool{}
					}
					callers[u][int32(ui)] = true
				}
			}
		}
	}
	callees := make([][]int32, len(m.units))
	pending := make([]int, len(m.units))
	for u, set := range callers {
		pending[u] = len(set)
		for c := range set {
			callees[c] = append(callees[c], int32(u))
		}
	}
	var queue []int32
	for ui := range m.units {
		if m.units[ui].init {
			queue = append(queue, int32(ui))
		}
	}
	for len(queue) > 0 {
		c := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, u := range callees[c] {
			pending[u]--
			if pending[u] == 0 && !m.units[u].init && !m.syms[m.units[u].sym].global() {
				m.units[u].init = true
				queue = append(queue, u)
			}
		}
	}
}

func isInitSection(name string) bool {
	for _, p := range []string{".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors"} {
		if name == p || strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

// isColdName reports whether a function symbol names a .cold part:
// "f.cold", "f.cold.3", "f.part.0.cold".
func isColdName(name string) bool { return coldParent(name) != name }

func coldParent(name string) string {
	if i := strings.LastIndex(name, ".cold"); i > 0 {
		rest := name[i+len(".cold"):]
		if rest == "" || rest[0] == '.' && isDigits(rest[1:]) {
			return name[:i]
		}
	}
	return name
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// familyOf names the source function a symbol comes from: the name up to
// the first suffix gcc adds (".part.1", ".isra.0", ".constprop.2",
// ".cold", ".lto_priv.0", ".localalias"). Source names never contain a dot.
func familyOf(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}

// normName is the name with every number gcc assigns replaced, so that
// "counter.2" and "counter.5", or "f.constprop.0" and "f.constprop.1",
// compare equal. Static constructor names carry the name of the first
// function of the file, which edits change.
func normName(name string) string {
	if strings.HasPrefix(name, "_GLOBAL__sub_I_") {
		return "_GLOBAL__sub_I_"
	}
	if strings.HasPrefix(name, "_GLOBAL__sub_D_") {
		return "_GLOBAL__sub_D_"
	}
	if strings.IndexByte(name, '.') < 0 {
		return name
	}
	var b strings.Builder
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
			if isDigits(p) {
				b.WriteByte('#')
				continue
			}
		}
		b.WriteString(p)
	}
	return b.String()
}
