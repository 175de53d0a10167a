package asmdiff

import (
	"sort"
	"strings"
)

// pairing says which symbol of the patched file is which symbol of the
// original one. Names are matched after normName has removed the numbers
// gcc assigns; where several symbols share a normalised name, functions are
// paired in file order and variables by the functions that use them, then
// in file order.
//
// Any one-to-one pairing of functions is safe: patched code always reaches
// a function through its paired original, so a function paired with the
// "wrong" clone is simply found changed and replaced as a whole. Variables
// are different, because pairing decides whose live value patched code
// reads; hence the extra care, and a warning when order alone decided.
type pairing struct {
	o2p, p2o []int32
	// unitP2O maps patched units to original ones, or -1.
	unitP2O, unitO2P []int32
	warnings         []string
}

type symClass uint8

const (
	classFunc symClass = iota + 1
	classData
	classAlias
)

type pairKey struct {
	class symClass
	name  string
}

func classify(m *model, id int32) symClass {
	s := &m.syms[id]
	switch {
	case s.local:
		return 0
	case s.part >= 0:
		if m.parts[s.part].cold && m.units[m.parts[s.part].unit].sym != id {
			return 0 // paired with its function
		}
		return classFunc
	case s.chunk >= 0 || s.common >= 0:
		return classData
	case s.alias >= 0:
		return classAlias
	}
	return 0
}

func pairSymbols(o, p *model) *pairing {
	pr := &pairing{
		o2p: fill(len(o.syms)), p2o: fill(len(p.syms)),
		unitO2P: fill(len(o.units)), unitP2O: fill(len(p.units)),
	}
	groups := map[pairKey]*[2][]int32{}
	var keys []pairKey
	add := func(m *model, side int) {
		for id := range m.syms {
			c := classify(m, int32(id))
			if c == 0 {
				continue
			}
			k := pairKey{c, normName(m.syms[id].name)}
			g := groups[k]
			if g == nil {
				g = &[2][]int32{}
				groups[k] = g
				keys = append(keys, k)
			}
			g[side] = append(g[side], int32(id))
		}
	}
	add(o, 0)
	add(p, 1)
	var oOwners, pOwners map[int32]string
	for _, k := range keys {
		g := groups[k]
		os, ps := g[0], g[1]
		if len(os) == 0 || len(ps) == 0 {
			continue
		}
		// Definition order: symbol ids are in order of first mention,
		// which for definitions is close but not exact.
		sortByDef(o, os)
		sortByDef(p, ps)
		if len(os) == 1 && len(ps) == 1 {
			pr.pair(os[0], ps[0])
			continue
		}
		if k.class != classData {
			// Exact names first, then file order.
			pr.pairExact(o, p, os, ps)
			pr.pairInOrder(os, ps)
			continue
		}
		if oOwners == nil {
			oOwners, pOwners = owners(o), owners(p)
		}
		byOwner := map[string][]int32{}
		for _, oo := range os {
			if w := oOwners[oo]; w != "" {
				byOwner[w] = append(byOwner[w], oo)
			}
		}
		for _, po := range ps {
			if cands := byOwner[pOwners[po]]; len(cands) > 0 && pOwners[po] != "" {
				pr.pair(cands[0], po)
				byOwner[pOwners[po]] = cands[1:]
			}
		}
		var lo, lp []int32
		for _, oo := range os {
			if pr.o2p[oo] < 0 {
				lo = append(lo, oo)
			}
		}
		for _, po := range ps {
			if pr.p2o[po] < 0 {
				lp = append(lp, po)
			}
		}
		if len(lo) > 0 && len(lo) == len(lp) {
			for i := range lo {
				pr.pair(lo[i], lp[i])
				if o.syms[lo[i]].name != p.syms[lp[i]].name || len(lo) > 1 {
					pr.warnings = append(pr.warnings, "static variable "+p.syms[lp[i]].name+
						" of "+p.name+" is taken to be "+o.syms[lo[i]].name+" of "+o.name+
						" by its position among variables of the same name; check that the patch keeps using the right one")
				}
			}
		}
	}
	// Units follow their symbols; cold parts pair in order.
	for ui := range p.units {
		po := pr.p2o[p.units[ui].sym]
		if po < 0 || o.syms[po].part < 0 {
			continue
		}
		ou := o.parts[o.syms[po].part].unit
		if o.units[ou].sym != po {
			continue
		}
		pr.unitP2O[ui], pr.unitO2P[ou] = ou, int32(ui)
		pp, op := p.units[ui].parts, o.units[ou].parts
		for k := 1; k < len(pp) && k < len(op); k++ {
			pr.pair(o.parts[op[k]].sym, p.parts[pp[k]].sym)
		}
	}
	return pr
}

func fill(n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = -1
	}
	return s
}

func (pr *pairing) pair(o, p int32) { pr.o2p[o], pr.p2o[p] = p, o }

func (pr *pairing) pairExact(o, p *model, os, ps []int32) {
	byName := map[string]int32{}
	for _, id := range os {
		byName[o.syms[id].name] = id
	}
	for _, id := range ps {
		if oid, ok := byName[p.syms[id].name]; ok && pr.o2p[oid] < 0 && pr.p2o[id] < 0 {
			pr.pair(oid, id)
		}
	}
}

func (pr *pairing) pairInOrder(os, ps []int32) {
	j := 0
	for _, pid := range ps {
		if pr.p2o[pid] >= 0 {
			continue
		}
		for j < len(os) && pr.o2p[os[j]] >= 0 {
			j++
		}
		if j == len(os) {
			return
		}
		pr.pair(os[j], pid)
	}
}

func sortByDef(m *model, ids []int32) {
	pos := func(id int32) int32 {
		s := &m.syms[id]
		switch {
		case s.def >= 0:
			return s.def
		case s.common >= 0:
			return s.common
		}
		return s.alias
	}
	sort.SliceStable(ids, func(i, j int) bool { return pos(ids[i]) < pos(ids[j]) })
}

// owners maps every named data symbol to the sorted families of the
// functions that use it: a static local belongs to the function that
// declares it, and to those it is inlined into.
func owners(m *model) map[int32]string {
	sets := map[int32]map[string]bool{}
	for ui := range m.units {
		fam := m.units[ui].family
		for _, pi := range m.units[ui].parts {
			for _, i := range m.parts[pi].stmts {
				for _, r := range m.stmtRefs(i) {
					s := &m.syms[r.sym]
					if s.local || s.chunk < 0 && s.common < 0 {
						continue
					}
					if sets[r.sym] == nil {
						sets[r.sym] = map[string]bool{}
					}
					sets[r.sym][fam] = true
				}
			}
		}
	}
	out := make(map[int32]string, len(sets))
	for id, set := range sets {
		names := make([]string, 0, len(set))
		for n := range set {
			names = append(names, n)
		}
		sort.Strings(names)
		out[id] = strings.Join(names, ",")
	}
	return out
}
