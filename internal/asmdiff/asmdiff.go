// Package asmdiff compares the assembly gcc produced for one translation
// unit before and after a source change, and writes the augmented assembly
// that carries the change as patch sections (docs/augmented-assembly.md).
//
// Generate is free of I/O: the compiler wrapper calls it in process, the
// gensrc command wraps it, and the fuzzer drives it. docs/differ.md explains
// how it decides what changed.
package asmdiff

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/asm"
)

// Options name the inputs in messages.
type Options struct {
	// OriginalName and PatchedName are how errors and warnings refer to
	// the two inputs; they default to "ORIGINAL.s" and "PATCHED.s".
	OriginalName, PatchedName string
}

// Report says what changed.
type Report struct {
	// Functions lists source functions with status "changed" or "new".
	// A function counts once, whatever clones and parts gcc made of it.
	Functions []Change `json:"functions"`
	// Variables lists new variables (status "new") and read-only objects
	// whose new contents the patch carries (status "changed").
	Variables []Change `json:"variables"`
	// UnchangedFunctions counts the source functions of PATCHED.s that
	// the patch leaves alone.
	UnchangedFunctions int `json:"unchanged_functions"`
	// Warnings are things the user should know but that do not stop the
	// patch, such as a function that PATCHED.s no longer has.
	Warnings []string `json:"warnings,omitempty"`
}

// Change is one entry of a report.
type Change struct {
	// Name is the name in the source: the C name, or the mangled C++
	// name, without gcc's suffixes (".part.0", ".cold", ".constprop.1")
	// or the numbers of static locals ("counter" for "counter.2").
	Name   string `json:"name"`
	Status string `json:"status"`
	// Symbols lists the assembly symbols behind the entry when they are
	// not just Name: gcc's clones ("f.part.0") and numbered statics.
	// Original names are given for changed symbols, patched names for
	// new ones.
	Symbols []string `json:"symbols,omitempty"`
}

// Statuses of a Change.
const (
	StatusChanged = "changed"
	StatusNew     = "new"
)

// The reasons behind an *UnsupportedError, for errors.Is.
var (
	// ErrNewTLSVariable: the patch adds a thread-local variable.
	ErrNewTLSVariable = errors.New("new thread-local variable")
	// ErrDynamicInit: new state that only a static initialiser would set
	// up, which never runs again in a live process.
	ErrDynamicInit = errors.New("new variable needs a static initialiser")
	// ErrRelocation: a relocation form that patch code cannot carry.
	ErrRelocation = errors.New("unsupported relocation form")
	// ErrConstruct: an assembly construct the differ does not handle in
	// patch code.
	ErrConstruct = errors.New("unsupported construct")
	// ErrAliasChanged: an alias (.set) now names something else.
	ErrAliasChanged = errors.New("alias changed")
)

// UnsupportedError is a change that hotpatch cannot turn into a patch.
type UnsupportedError struct {
	// File and Line locate the assembly statement at fault.
	File string
	Line int
	Text string
	// Reason explains the refusal and what the user can do.
	Reason string
	// Err is one of the Err* reasons above.
	Err error
}

func (e *UnsupportedError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, strings.TrimSpace(e.Text), e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

func (e *UnsupportedError) Unwrap() error { return e.Err }

// VariableChangedError refuses a change to an existing variable: its
// size, initial value, type, section or alignment. A running process has
// its own value in that variable, which a patch must never overwrite.
type VariableChangedError struct {
	// Name is the variable as in the source, Symbol as in the assembly.
	Name, Symbol string
	// Original and Patched are the two definitions, with their lines.
	Original, Patched         string
	OriginalLine, PatchedLine int
	// Reason says what differs.
	Reason string
}

func (e *VariableChangedError) Error() string {
	return fmt.Sprintf("variable %s changed: %s (original line %d: %s; patched line %d: %s); "+
		"a running process keeps its current value, so a patch cannot change an existing variable: "+
		"keep its definition as it was and put what is new in a new variable",
		e.Symbol, e.Reason, e.OriginalLine, e.Original, e.PatchedLine, e.Patched)
}

// Marker is the line between ORIGINAL.s and the patch sections.
const Marker = "# hotpatch: patch sections follow"

// Generate compares original and patched, the assembly of one translation
// unit before and after a source change. It returns the augmented assembly
// (original byte for byte, then the patch sections) and a report. When
// nothing changed, out is original itself.
func Generate(original, patched []byte, opts Options) (out []byte, rep *Report, err error) {
	if opts.OriginalName == "" {
		opts.OriginalName = "ORIGINAL.s"
	}
	if opts.PatchedName == "" {
		opts.PatchedName = "PATCHED.s"
	}
	// The debug sections are neither compared nor copied.
	lite := asm.Options{SkipDebug: true}
	of, err := asm.ParseWith(view(original), lite)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", opts.OriginalName, err)
	}
	pf, err := asm.ParseWith(view(patched), lite)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", opts.PatchedName, err)
	}
	for _, x := range []struct {
		f    *asm.File
		name string
	}{{of, opts.OriginalName}, {pf, opts.PatchedName}} {
		if x.f.IntelSyntax {
			return nil, nil, &UnsupportedError{File: x.name, Err: ErrConstruct,
				Reason: "the file uses Intel syntax; compile with the default -masm=att"}
		}
	}
	o := buildModel(of, opts.OriginalName)
	p := buildModel(pf, opts.PatchedName)
	d := &differ{o: o, p: p, pr: pairSymbols(o, p), ro: map[[2]int32]uint8{}}
	res, err := d.diff()
	if err != nil {
		return nil, nil, err
	}
	if res.empty() {
		return original, d.report(res), nil
	}
	out, err = d.emit(res, original)
	if err != nil {
		return nil, nil, err
	}
	// After emit, which may warn about names it had to change.
	return out, d.report(res), nil
}

// view looks at b as a string without copying it: inputs run to tens of
// megabytes, and Generate neither changes them nor keeps the strings after
// it returns (the output is a fresh copy).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// result is what diff found, by patched symbol or unit.
type result struct {
	changedUnits []int32
	newUnits     []int32
	// changedRO are paired read-only objects with new contents.
	changedRO []int32
	// newData are data symbols of PATCHED.s without an original.
	newData    []int32
	newAliases []int32
	warnings   []string
	// why says, for each changed unit, what differed first.
	why map[int32]string

	isChangedUnit, isNewUnit []bool
	isChangedRO, isNewData   map[int32]bool
}

func (r *result) empty() bool {
	return len(r.changedUnits)+len(r.newUnits)+len(r.changedRO)+len(r.newData)+len(r.newAliases) == 0
}

func (d *differ) diff() (*result, error) {
	o, p, pr := d.o, d.p, d.pr
	res := &result{
		why:           map[int32]string{},
		isChangedUnit: make([]bool, len(p.units)), isNewUnit: make([]bool, len(p.units)),
		isChangedRO: map[int32]bool{}, isNewData: map[int32]bool{},
	}
	res.warnings = append(res.warnings, pr.warnings...)
	// Variables first: a refused variable ends the run.
	for id := range p.syms {
		sp := int32(id)
		if classify(p, sp) != classData {
			continue
		}
		s := &p.syms[sp]
		so := pr.p2o[sp]
		if so < 0 {
			if sectionOf(p, sp) == 't' || s.typ == typeTLS {
				return nil, &UnsupportedError{File: p.name, Line: p.line(p.defStmt(sp)), Text: p.text(p.defStmt(sp)),
					Err: ErrNewTLSVariable,
					Reason: "new thread-local variable " + s.name + ": hotpatch cannot add thread-local storage " +
						"to a running process yet; keep the new state in an ordinary variable or on the heap"}
			}
			res.newData = append(res.newData, sp)
			res.isNewData[sp] = true
			continue
		}
		switch roP, roO := isReadOnlyObject(p, sp), isReadOnlyObject(o, so); {
		case roP && roO:
			if !d.roEqual(so, sp) {
				res.changedRO = append(res.changedRO, sp)
				res.isChangedRO[sp] = true
			}
			continue
		case roP != roO:
			return nil, d.variableError(so, sp, "it changed between read-only and writable")
		}
		if why := d.variable(so, sp); why != "" {
			return nil, d.variableError(so, sp, why)
		}
		if o.syms[so].bind != s.bind {
			res.warnings = append(res.warnings, "variable "+s.name+" changed its linkage (static, global or weak); "+
				"the patch keeps the original linkage")
		}
	}
	for ui := range p.units {
		uo := pr.unitP2O[ui]
		if uo < 0 {
			res.newUnits = append(res.newUnits, int32(ui))
			res.isNewUnit[ui] = true
			continue
		}
		if ok, why := d.units(uo, int32(ui)); !ok {
			res.changedUnits = append(res.changedUnits, int32(ui))
			res.isChangedUnit[ui] = true
			res.why[int32(ui)] = why
		}
	}
	for id := range p.syms {
		sp := int32(id)
		if classify(p, sp) != classAlias {
			continue
		}
		so := pr.p2o[sp]
		if so < 0 {
			res.newAliases = append(res.newAliases, sp)
			continue
		}
		c := d.newContext(-1, -1)
		if !c.stmt(o.syms[so].alias, p.syms[sp].alias) {
			i := p.syms[sp].alias
			return nil, &UnsupportedError{File: p.name, Line: p.line(i), Text: p.text(i), Err: ErrAliasChanged,
				Reason: "alias " + p.syms[sp].name + " now names something else; the old and new names share an " +
					"address in the running program and cannot be separated: keep the alias as it was"}
		}
	}
	if err := d.checkLostAliases(res); err != nil {
		return nil, err
	}
	if err := d.checkInit(res); err != nil {
		return nil, err
	}
	d.checkLoose(res)
	d.removed(res)
	return res, nil
}

func (d *differ) variableError(so, sp int32, why string) error {
	o, p := d.o, d.p
	return &VariableChangedError{
		Name: sourceName(p.syms[sp].name), Symbol: o.syms[so].name,
		Original: o.definition(so), Patched: p.definition(sp),
		OriginalLine: o.line(o.defStmt(so)), PatchedLine: p.line(p.defStmt(sp)),
		Reason: why,
	}
}

// checkLostAliases handles aliases of ORIGINAL.s that PATCHED.s no longer
// has (gcc's identical code folding, C++ constructor and destructor
// variants). A local one is harmless: every reference to it is in this
// file and has been compared. A global one shares its address with its
// target, so code elsewhere that calls it would follow any redirection of
// the target: when PATCHED.s defines the name as something of its own,
// the two cannot be told apart any more, and the change is refused.
func (d *differ) checkLostAliases(res *result) error {
	o, p := d.o, d.p
	for id := range o.syms {
		so := int32(id)
		s := &o.syms[so]
		if classify(o, so) != classAlias || d.pr.o2p[so] >= 0 || !s.global() {
			continue
		}
		ps := p.lookup(s.name)
		if ps < 0 || !p.syms[ps].defined() {
			res.warnings = append(res.warnings, "alias "+s.name+" is no longer in "+p.name+
				"; it keeps the address of "+s.aliasExpr+" in running processes")
			continue
		}
		return &UnsupportedError{File: o.name, Line: o.line(s.alias), Text: o.text(s.alias), Err: ErrAliasChanged,
			Reason: s.name + " is an alias of " + s.aliasExpr + " in the original but a definition of its own in " +
				p.name + "; code elsewhere reaches it at " + s.aliasExpr + "'s address, which cannot be redirected " +
				"for one and not the other: keep the two identical, or build both stages with -fno-ipa-icf"}
	}
	return nil
}

// checkInit refuses new variables that changed or new static initialisers
// use, and warns that changed initialisers do not run again.
func (d *differ) checkInit(res *result) error {
	p := d.p
	for _, list := range [][]int32{res.changedUnits, res.newUnits} {
		for _, ui := range list {
			u := &p.units[ui]
			if !u.init {
				continue
			}
			for _, pi := range u.parts {
				for _, i := range p.parts[pi].stmts {
					for _, r := range p.stmtRefs(i) {
						if res.isNewData[r.sym] {
							return &UnsupportedError{File: p.name, Line: p.line(i), Text: p.text(i), Err: ErrDynamicInit,
								Reason: "new variable " + p.syms[r.sym].name + " is set up by the static initialiser " +
									p.syms[u.sym].name + ", which running processes have already run and will not run again; " +
									"initialise it statically, or on first use (a function-local static)"}
						}
					}
				}
			}
			res.warnings = append(res.warnings, "static initialiser or finaliser "+p.syms[u.sym].name+
				" changed; running processes have already run their initialisers and will not run this one again")
		}
	}
	return nil
}

// checkLoose compares data outside any object, such as init array entries.
func (d *differ) checkLoose(res *result) {
	o, p := d.o, d.p
	byName := map[string][]int32{}
	for sec, list := range o.loose {
		byName[o.f.Sections[sec].Name] = append(byName[o.f.Sections[sec].Name], list...)
	}
	var names []string
	seen := map[string]bool{}
	for sec, list := range p.loose {
		name := p.f.Sections[sec].Name
		ol := byName[name]
		delete(byName, name)
		equal := len(ol) == len(list)
		for k := 0; equal && k < len(list); k++ {
			equal = d.looseEqual(ol[k], list[k])
		}
		if !equal && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	for name := range byName {
		if !seen[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if isInitSection(name) {
			res.warnings = append(res.warnings, "the entries of "+name+" changed; constructors and destructors "+
				"that running processes already ran, or will run at exit, are not changed by a patch")
			continue
		}
		res.warnings = append(res.warnings, "data of section "+name+" outside any symbol changed; "+
			"a patch cannot change it, and it keeps its original contents")
	}
}

// looseEqual compares two statements outside functions and objects:
// textually, with named symbols by pairing and local labels by name.
func (d *differ) looseEqual(io, ip int32) bool {
	o, p := d.o, d.p
	a, b := &o.f.Stmts[io], &p.f.Stmts[ip]
	if a.Kind != b.Kind || a.Name != b.Name {
		return false
	}
	ra, rb := o.stmtRefs(io), p.stmtRefs(ip)
	if len(ra) != len(rb) {
		return false
	}
	pa, pb := int32(0), int32(0)
	for k := range ra {
		x, y := ra[k], rb[k]
		if a.Args[pa:x.Off] != b.Args[pb:y.Off] || a.Args[x.Off+x.Len:x.End()] != b.Args[y.Off+y.Len:y.End()] {
			return false
		}
		if so, sp := x.sym, y.sym; d.pr.p2o[sp] != so && o.syms[so].name != p.syms[sp].name {
			return false
		}
		pa, pb = x.End(), y.End()
	}
	return a.Args[pa:] == b.Args[pb:]
}

// removed warns about functions and variables that PATCHED.s lost.
func (d *differ) removed(res *result) {
	o, p, pr := d.o, d.p, d.pr
	families := map[string]bool{}
	for _, u := range p.units {
		families[u.family] = true
	}
	warned := map[string]bool{}
	for ui, u := range o.units {
		if pr.unitO2P[ui] >= 0 || families[u.family] || warned[u.family] {
			continue
		}
		warned[u.family] = true
		res.warnings = append(res.warnings, "function "+u.family+" is no longer in "+p.name+
			"; its original code stays in place, and code that the patch leaves alone may still call it")
	}
	for id := range o.syms {
		so := int32(id)
		if classify(o, so) != classData || pr.o2p[so] >= 0 || isInternalName(o.syms[so].name) {
			continue
		}
		res.warnings = append(res.warnings, "variable "+o.syms[so].name+" is no longer in "+p.name+
			"; it stays in place in running processes")
	}
}

// sectionOf returns the class of the section a data symbol lives in.
func sectionOf(m *model, id int32) byte {
	s := &m.syms[id]
	switch {
	case s.chunk >= 0:
		return sectionClass(&m.f.Sections[s.sec])
	case s.common >= 0:
		return 'b'
	}
	return 0
}

func (m *model) defStmt(id int32) int32 {
	s := &m.syms[id]
	switch {
	case s.def >= 0:
		return s.def
	case s.common >= 0:
		return s.common
	case s.alias >= 0:
		return s.alias
	}
	return -1
}

func (m *model) line(i int32) int {
	if i < 0 {
		return 0
	}
	return int(m.f.Stmts[i].Line)
}

func (m *model) text(i int32) string {
	if i < 0 {
		return ""
	}
	return m.f.Stmts[i].Text(m.f)
}

// definition renders a data symbol's definition for messages: its section,
// attributes and first statements of content.
func (m *model) definition(id int32) string {
	s := &m.syms[id]
	var parts []string
	if s.chunk >= 0 {
		parts = append(parts, "section "+m.f.Sections[s.sec].Name)
		c := &m.chunks[s.chunk]
		for _, i := range c.prefix {
			parts = append(parts, m.text(i))
		}
	}
	if s.sizeStmt >= 0 {
		parts = append(parts, m.text(s.sizeStmt))
	}
	if s.common >= 0 {
		parts = append(parts, m.text(s.common))
	}
	if s.chunk >= 0 {
		c := &m.chunks[s.chunk]
		for k, i := range c.stmts[1:] {
			if k == 6 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, m.text(i))
		}
	}
	return strings.Join(parts, "; ")
}

// isInternalName tells the objects gcc makes up, which users neither
// wrote nor want to see in a report.
func isInternalName(name string) bool {
	for _, p := range []string{"CSWTCH.", "DW.ref.", "__PRETTY_FUNCTION__.", "__FUNCTION__.", "__func__.",
		"__compound_literal.", "_ZGV", "_ZTV", "_ZTI", "_ZTS", "_ZTT", "_ZTC", "_ZTH", "_ZTW", ".L"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// sourceName strips what gcc appends to a name: the number of a static
// local, the suffix of a clone.
func sourceName(name string) string { return familyOf(name) }

// report builds the report: one entry per source function (family) and per
// user-visible variable.
func (d *differ) report(res *result) *Report {
	o, p, pr := d.o, d.p, d.pr
	rep := &Report{Functions: []Change{}, Variables: []Change{}}
	origFamilies := map[string]bool{}
	for _, u := range o.units {
		origFamilies[u.family] = true
	}
	for id := range o.syms {
		if classify(o, int32(id)) == classAlias {
			origFamilies[familyOf(o.syms[id].name)] = true
		}
	}
	type fam struct {
		changed bool
		symbols []string
	}
	fams := map[string]*fam{}
	var order []string
	for ui := range p.units {
		u := &p.units[ui]
		f := fams[u.family]
		if f == nil {
			f = &fam{}
			fams[u.family] = f
			order = append(order, u.family)
		}
		switch {
		case res.isChangedUnit[ui]:
			f.changed = true
			f.symbols = append(f.symbols, o.syms[o.units[pr.unitP2O[ui]].sym].name)
		case res.isNewUnit[ui]:
			f.changed = true
			f.symbols = append(f.symbols, p.syms[u.sym].name)
		}
	}
	for _, name := range order {
		f := fams[name]
		if !f.changed {
			rep.UnchangedFunctions++
			continue
		}
		c := Change{Name: name, Status: StatusChanged}
		if !origFamilies[name] {
			c.Status = StatusNew
		}
		if len(f.symbols) != 1 || f.symbols[0] != name {
			c.Symbols = f.symbols
		}
		rep.Functions = append(rep.Functions, c)
	}
	addVar := func(sym, status string) {
		if isInternalName(sym) {
			return
		}
		c := Change{Name: sourceName(sym), Status: status}
		if c.Name != sym {
			c.Symbols = []string{sym}
		}
		rep.Variables = append(rep.Variables, c)
	}
	for _, sp := range res.newData {
		addVar(p.syms[sp].name, StatusNew)
	}
	for _, sp := range res.changedRO {
		addVar(o.syms[pr.p2o[sp]].name, StatusChanged)
	}
	sort.Slice(rep.Functions, func(i, j int) bool { return rep.Functions[i].Name < rep.Functions[j].Name })
	sort.Slice(rep.Variables, func(i, j int) bool { return rep.Variables[i].Name < rep.Variables[j].Name })
	rep.Warnings = res.warnings
	return rep
}
