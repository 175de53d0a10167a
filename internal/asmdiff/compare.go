package asmdiff

import (
	"strings"

	"github.com/hotpatch/hotpatch/internal/asm"
)

// The comparison walks two functions (or two data objects) statement by
// statement and builds, as it goes, a one-to-one map between their local
// labels. Two statements are equal when they are the same instruction or
// directive, their text is the same outside symbol references, and each
// pair of references is equal: paired symbols for named ones, labels that
// map to each other for local ones. When a pair of local labels heads data
// (a literal, a jump table, an LSDA), the two objects are queued and
// compared in the same map, so a literal matches by content whatever gcc
// numbered it, and a jump table matches when its entries point to
// corresponding places of the two functions. Anything the walk does not
// recognise must be textually identical, so what it cannot prove equal is
// different.

type differ struct {
	o, p *model
	pr   *pairing
	// ro memoises the comparison of named read-only objects by
	// original symbol: 1 equal, 2 different, 3 in progress (taken as
	// equal, which is right for objects that point at each other).
	ro map[[2]int32]uint8
	// place, placeMap and placeIndex find the twins of unnamed objects
	// (inplace.go): the original chunk of each patched one (-1: none),
	// the label map of that comparison, and original unnamed chunks by
	// chunkKey.
	place      map[int32]int32
	placeMap   map[int32]map[int32]int32
	placeIndex map[string][]int32
}

type context struct {
	d *differ
	// uo and up are the units being compared, or -1 for data.
	uo, up int32
	lo2p   map[int32]int32
	lp2o   map[int32]int32
	queue  [][2]int32
	seen   map[[2]int32]bool
	// why says what differed first, for diagnostics.
	why string
}

func (d *differ) newContext(uo, up int32) *context {
	return &context{d: d, uo: uo, up: up, lo2p: map[int32]int32{}, lp2o: map[int32]int32{}}
}

func (c *context) fail(why string, io, ip int32) bool {
	if c.why == "" {
		o, p := c.d.o, c.d.p
		c.why = why
		if io >= 0 && ip >= 0 {
			c.why += ": " + o.f.Stmts[io].Text(o.f) + " | " + p.f.Stmts[ip].Text(p.f)
		}
	}
	return false
}

// units compares a function of each file with all its parts.
func (d *differ) units(uo, up int32) (bool, string) {
	c := d.newContext(uo, up)
	ou, pu := &d.o.units[uo], &d.p.units[up]
	if len(ou.parts) != len(pu.parts) {
		return false, "a .cold part appeared or disappeared"
	}
	for k := range ou.parts {
		if !c.seq(d.o.parts[ou.parts[k]].sig, d.p.parts[pu.parts[k]].sig) {
			return false, c.why
		}
	}
	if !c.drain() {
		return false, c.why
	}
	return true, ""
}

func (c *context) seq(a, b []int32) bool {
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	for k := 0; k < n; k++ {
		if !c.stmt(a[k], b[k]) {
			return false
		}
	}
	if len(a) != len(b) {
		i, j := int32(-1), int32(-1)
		if n < len(a) {
			i = a[n]
		}
		if n < len(b) {
			j = b[n]
		}
		c.fail("different number of statements", i, j)
		if i >= 0 {
			c.why += " (original: " + c.d.o.f.Stmts[i].Text(c.d.o.f) + ")"
		}
		if j >= 0 {
			c.why += " (patched: " + c.d.p.f.Stmts[j].Text(c.d.p.f) + ")"
		}
		return false
	}
	return true
}

func (c *context) drain() bool {
	for len(c.queue) > 0 {
		pair := c.queue[len(c.queue)-1]
		c.queue = c.queue[:len(c.queue)-1]
		if !c.chunk(pair[0], pair[1]) {
			return false
		}
	}
	return true
}

func (c *context) chunk(co, cp int32) bool {
	key := [2]int32{co, cp}
	if c.seen == nil {
		c.seen = map[[2]int32]bool{}
	}
	if c.seen[key] {
		return true
	}
	c.seen[key] = true
	o, p := c.d.o, c.d.p
	a, b := &o.chunks[co], &p.chunks[cp]
	if sectionClass(&o.f.Sections[a.sec]) != sectionClass(&p.f.Sections[b.sec]) {
		return c.fail("object "+p.syms[b.sym].name+" moved to another kind of section", -1, -1)
	}
	if !c.seq(a.prefix, b.prefix) || !c.seq(a.sig, b.sig) {
		return false
	}
	return true
}

func (c *context) stmt(io, ip int32) bool {
	o, p := c.d.o, c.d.p
	a, b := &o.f.Stmts[io], &p.f.Stmts[ip]
	if a.Kind != b.Kind || a.Name != b.Name {
		if a.Kind == asm.Label && b.Kind == asm.Label {
			return c.labelDef(io, ip)
		}
		return c.fail("different statements", io, ip)
	}
	if a.Kind == asm.Label {
		return c.labelDef(io, ip)
	}
	if !c.args(a.Args, b.Args, o.stmtRefs(io), p.stmtRefs(ip)) {
		return c.fail("different operands", io, ip)
	}
	return true
}

// args compares operand text: equal outside references, and references
// equal by c.sym.
func (c *context) args(a, b string, ra, rb []ref) bool {
	if len(ra) != len(rb) {
		return false
	}
	if len(ra) == 0 {
		return a == b
	}
	pa, pb := int32(0), int32(0)
	for k := range ra {
		x, y := ra[k], rb[k]
		if a[pa:x.Off] != b[pb:y.Off] || a[x.Off+x.Len:x.End()] != b[y.Off+y.Len:y.End()] {
			return false
		}
		if !c.sym(x.sym, y.sym) {
			return false
		}
		pa, pb = x.End(), y.End()
	}
	return a[pa:] == b[pb:]
}

// exprRefs finds the references of an alias expression.
func exprRefs(m *model, expr string) []ref {
	rs := asm.Refs(expr, nil)
	out := make([]ref, len(rs))
	for k, r := range rs {
		// Every name of an alias was seen when the model was built.
		out[k] = ref{Ref: r, sym: m.lookup(r.Name(expr))}
		if out[k].sym < 0 {
			return nil
		}
	}
	return out
}

func (c *context) labelDef(io, ip int32) bool {
	o, p := c.d.o, c.d.p
	a, b := &o.f.Stmts[io], &p.f.Stmts[ip]
	na, nb := asm.IsNumericLabel(a.Name), asm.IsNumericLabel(b.Name)
	if na || nb {
		if a.Name != b.Name {
			return c.fail("different labels", io, ip)
		}
		return true
	}
	if !c.sym(o.lookup(a.Name), p.lookup(b.Name)) {
		return c.fail("labels at different places", io, ip)
	}
	return true
}

// resolveLocal follows .set aliases of local labels (.LTHUNK0 and the
// like) to what they stand for.
func resolveLocal(m *model, id int32) int32 {
	for n := 0; n < 8 && m.syms[id].local && m.syms[id].aliasOf >= 0 && m.syms[id].def < 0; n++ {
		id = m.syms[id].aliasOf
	}
	return id
}

func (c *context) sym(so, sp int32) bool {
	o, p := c.d.o, c.d.p
	so, sp = resolveLocal(o, so), resolveLocal(p, sp)
	a, b := &o.syms[so], &p.syms[sp]
	if a.local != b.local {
		return false
	}
	if a.local {
		return c.bind(so, sp)
	}
	if b.defined() {
		if c.d.pr.p2o[sp] != so {
			return false
		}
		if isReadOnlyObject(p, sp) {
			return c.d.roEqual(so, sp)
		}
		return true
	}
	// Undefined in the patched file: the same external symbol, which
	// the original must not define as a local of its own.
	return a.name == b.name && (!a.defined() || a.global())
}

func (c *context) bind(so, sp int32) bool {
	if x, ok := c.lo2p[so]; ok {
		return x == sp
	}
	if _, ok := c.lp2o[sp]; ok {
		return false
	}
	o, p := c.d.o, c.d.p
	a, b := &o.syms[so], &p.syms[sp]
	if !a.defined() || !b.defined() {
		return a.name == b.name && !a.defined() && !b.defined()
	}
	if a.def < 0 && a.alias >= 0 || b.def < 0 && b.alias >= 0 {
		// Local aliases of expressions, such as ".set .LC13,.LC284+8":
		// equal when their expressions are.
		if !(a.def < 0 && a.alias >= 0 && b.def < 0 && b.alias >= 0) {
			return false
		}
		c.lo2p[so], c.lp2o[sp] = sp, so
		return c.args(a.aliasExpr, b.aliasExpr, exprRefs(o, a.aliasExpr), exprRefs(p, b.aliasExpr))
	}
	if (a.unit >= 0) != (b.unit >= 0) || (a.chunk >= 0) != (b.chunk >= 0) || (a.inChunk >= 0) != (b.inChunk >= 0) {
		return false
	}
	if a.unit >= 0 && (a.unit != c.uo || b.unit != c.up) {
		// A label inside some other function.
		return false
	}
	if a.unit < 0 && a.chunk < 0 && a.inChunk < 0 {
		// A label outside functions and objects: only its name can be
		// compared.
		return a.name == b.name
	}
	c.lo2p[so], c.lp2o[sp] = sp, so
	switch {
	case a.chunk >= 0:
		c.queue = append(c.queue, [2]int32{a.chunk, b.chunk})
	case a.inChunk >= 0:
		c.queue = append(c.queue, [2]int32{a.inChunk, b.inChunk})
	}
	return true
}

// roEqual compares two paired read-only objects by content.
func (d *differ) roEqual(so, sp int32) bool {
	key := [2]int32{so, sp}
	switch d.ro[key] {
	case 1, 3:
		return true
	case 2:
		return false
	}
	a, b := &d.o.syms[so], &d.p.syms[sp]
	if a.chunk < 0 || b.chunk < 0 {
		d.ro[key] = 2
		return false
	}
	d.ro[key] = 3
	c := d.newContext(-1, -1)
	ok := c.chunk(a.chunk, b.chunk) && c.drain() && d.sameAttributes(so, sp) == ""
	if ok {
		d.ro[key] = 1
	} else {
		d.ro[key] = 2
	}
	return ok
}

// sameAttributes compares what the symbol directives say about two paired
// data symbols, and returns what differs.
func (d *differ) sameAttributes(so, sp int32) string {
	o, p := d.o, d.p
	a, b := &o.syms[so], &p.syms[sp]
	if a.typ != b.typ {
		return "its type changed"
	}
	if (a.chunk >= 0) != (b.chunk >= 0) || (a.common >= 0) != (b.common >= 0) {
		return "it changed between a common symbol and a defined one"
	}
	if a.chunk >= 0 {
		if normSection(o, a.sec, a.name) != normSection(p, b.sec, b.name) {
			return "its section changed"
		}
	}
	if (a.sizeStmt >= 0) != (b.sizeStmt >= 0) {
		return "its size changed"
	}
	c := d.newContext(-1, -1)
	if a.sizeStmt >= 0 && !c.stmt(a.sizeStmt, b.sizeStmt) {
		return "its size changed"
	}
	if a.common >= 0 && !c.stmt(a.common, b.common) {
		return "its size or alignment changed"
	}
	return ""
}

// variable compares two paired writable variables and returns what
// differs, or "".
func (d *differ) variable(so, sp int32) string {
	if why := d.sameAttributes(so, sp); why != "" {
		return why
	}
	a, b := &d.o.syms[so], &d.p.syms[sp]
	if a.chunk < 0 {
		return ""
	}
	c := d.newContext(-1, -1)
	if !c.seq(d.o.chunks[a.chunk].prefix, d.p.chunks[b.chunk].prefix) {
		return "its alignment changed"
	}
	if !c.chunk(a.chunk, b.chunk) {
		return "its initial value changed"
	}
	if !c.drain() {
		return "something its initial value points to changed (" + c.why + ")"
	}
	return ""
}

// sectionClass sorts sections by how their contents are used at run time.
func sectionClass(s *asm.Section) byte {
	switch {
	case s.Exec():
		return 'x'
	case s.TLS():
		return 't'
	case s.NoBits():
		return 'b'
	case s.Write() && !isRelRO(s.Name):
		return 'w'
	}
	return 'r'
}

func isRelRO(name string) bool { return strings.HasPrefix(name, ".data.rel.ro") }

// isReadOnlyObject reports whether a symbol heads an object that the
// program cannot change: its contents may be replaced by a patch.
func isReadOnlyObject(m *model, id int32) bool {
	s := &m.syms[id]
	return s.chunk >= 0 && sectionClass(&m.f.Sections[s.sec]) == 'r'
}

// normSection describes a section for comparison, with the owner's name
// taken out of the section and group names (-fdata-sections and COMDAT
// groups name sections after their symbol, whose number may change).
func normSection(m *model, sec int32, owner string) string {
	s := &m.f.Sections[sec]
	cut := func(n string) string {
		if n == owner {
			return "\x00"
		}
		if strings.HasSuffix(n, "."+owner) {
			return n[:len(n)-len(owner)] + "\x00"
		}
		return n
	}
	return cut(s.Name) + "|" + s.Flags + "|" + s.Type + "|" + s.Entsize + "|" + cut(s.Group)
}
