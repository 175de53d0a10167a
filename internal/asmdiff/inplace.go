package asmdiff

import (
	"strings"

	"github.com/hotpatch/hotpatch/internal/asm"
)

// Unnamed objects (.LC labels: string literals, the initialiser gcc copies
// into a local array with rep movsq, constant-pool entries, compound
// literal initialisers) have no name that survives a change: gcc numbers
// them in the order it emits them, so a line added above moves every
// number. Patch code that uses one is pointed at the object of ORIGINAL.s
// with the same contents, found by comparing contents and, recursively,
// what they point to (an array of pointers to renumbered strings matches
// when the strings do). Only what has no such twin is copied into the
// patch. This is what makes a writable initialiser usable at all: a copy
// of it would be right too, as gcc never writes to its own initialisers,
// but using the original leaves nothing to argue about.

// inPlace returns the ORIGINAL.s label that patched local label sp, which
// heads or lies inside the unnamed object cp, stands for, or "" when
// ORIGINAL.s has no object with the same contents.
func (d *differ) inPlace(sp, cp int32) string {
	if d.place == nil {
		d.place = map[int32]int32{}
		d.placeMap = map[int32]map[int32]int32{}
		d.placeIndex = map[string][]int32{}
		for co := range d.o.chunks {
			if d.o.syms[d.o.chunks[co].sym].local {
				k := chunkKey(d.o, int32(co))
				d.placeIndex[k] = append(d.placeIndex[k], int32(co))
			}
		}
	}
	co, ok := d.place[cp]
	if !ok {
		co = -1
		for _, cand := range d.placeIndex[chunkKey(d.p, cp)] {
			c := d.newContext(-1, -1)
			if c.bind(d.o.chunks[cand].sym, d.p.chunks[cp].sym) && c.drain() {
				co = cand
				d.placeMap[cp] = c.lp2o
				break
			}
		}
		d.place[cp] = co
	}
	if co < 0 {
		return ""
	}
	if d.p.chunks[cp].sym == sp {
		return d.o.syms[d.o.chunks[co].sym].name
	}
	if so, ok := d.placeMap[cp][sp]; ok {
		return d.o.syms[so].name
	}
	return ""
}

// chunkKey sums up what an unnamed object must share with its twin: the
// kind of section, alignment and statements with the names they refer to
// left out, so that renumbered labels do not matter.
func chunkKey(m *model, c int32) string {
	ch := &m.chunks[c]
	var b strings.Builder
	b.WriteByte(sectionClass(&m.f.Sections[ch.sec]))
	for _, list := range [][]int32{ch.prefix, ch.sig} {
		for _, i := range list {
			st := &m.f.Stmts[i]
			b.WriteByte('\n')
			if st.Kind == asm.Label {
				b.WriteByte(':')
				continue
			}
			b.WriteString(st.Name)
			b.WriteByte(' ')
			pos := int32(0)
			for _, r := range m.stmtRefs(i) {
				b.WriteString(st.Args[pos:r.Off])
				b.WriteByte('$')
				b.WriteString(st.Args[r.Off+r.Len : r.End()])
				pos = r.End()
			}
			b.WriteString(st.Args[pos:])
		}
		b.WriteByte('|')
	}
	return b.String()
}
