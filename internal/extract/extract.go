// Package extract turns a patched link into a patch file.
//
// The patched stage of "hotpatch build" links the augmented objects with
// relocations kept (ld -q). Their patch sections are not allocated
// (docs/augmented-assembly.md §2), so the link's allocated layout is the
// original one, and the relocations of the patch sections survive with
// the placeholder names intact. Extraction keeps only the patch sections,
// rewrites every relocation to be relative to the patch, to the target
// object's load base, to a thread-local variable, or to a symbol of
// another object by name and version, and reads the function table.
package extract

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// ErrNoPatch means the patched output has no patch sections: nothing of
// it changed, and no patch file is written for it.
var ErrNoPatch = errors.New("no patch sections")

// RelocError is a relocation extraction cannot turn into a patch file
// relocation.
type RelocError struct {
	Object  string
	Section string
	Offset  uint64
	Symbol  string
	Reason  string
}

func (e *RelocError) Error() string {
	return fmt.Sprintf("%s: relocation at %s+%#x against %q: %s", e.Object, e.Section, e.Offset, e.Symbol, e.Reason)
}

// FuncTableError is a malformed entry of .hotpatch.funcs.
type FuncTableError struct {
	Object string
	Entry  int
	Reason string
}

func (e *FuncTableError) Error() string {
	return fmt.Sprintf("%s: function table entry %d: %s", e.Object, e.Entry, e.Reason)
}

// Options fill the patch header.
type Options struct {
	// Target names the target object in the header (for messages).
	Target      string
	ID          string
	Level       uint32
	Description string
	Labels      []string
	Created     time.Time
	ToolVersion string
	// Warn, when set, receives problems that do not stop extraction
	// but will stop the patch from applying, such as a replaced function
	// with no room for the jump.
	Warn func(string)
}

// Section names of the contract.
const (
	patchPrefix  = ".hotpatch."
	funcsSection = ".hotpatch.funcs"
	strsSection  = ".hotpatch.strs"
	funcEntry    = 32 // old, new, name offset, flags: four 8-byte words
)

// Placeholder prefixes and the relocation each one becomes (§4).
const (
	phExt    = "hotpatch.ext."
	phTPOff  = "hotpatch.tpoff."
	phDTPMod = "hotpatch.dtpmod."
	phDTPOff = "hotpatch.dtpoff."
	// phIFunc names a new ifunc of the patch: the link cannot carry the
	// ifunc type into sections that are not allocated.
	phIFunc = "hotpatch.ifunc."
	// phIFuncDef marks the definition of a new ifunc.
	phIFuncDef = "hotpatch.ifunc.def."
)

// tlsSlotRelocs are the relocation types that the TLS slot placeholders
// stand for, from the machine's table in internal/arch.
type tlsSlotRelocs struct{ tpoff, dtpmod, dtpoff uint32 }

func tlsRelocsFor(a *arch.Arch) (tlsSlotRelocs, error) {
	var r tlsSlotRelocs
	var ok1, ok2, ok3 bool
	r.tpoff, ok1 = a.SlotReloc(arch.ClassTPOff)
	r.dtpmod, ok2 = a.SlotReloc(arch.ClassDTPMod)
	r.dtpoff, ok3 = a.SlotReloc(arch.ClassDTPOff)
	if !ok1 || !ok2 || !ok3 {
		return r, fmt.Errorf("no TLS slot relocations for %v", a.Machine)
	}
	return r, nil
}

// File extracts the patch from the patched link at patchedPath, for the
// target object whose original-stage link is at originalPath.
func File(patchedPath, originalPath string, opts Options) (*patchfile.Patch, error) {
	pf, err := elf.Open(patchedPath)
	if err != nil {
		return nil, fmt.Errorf("extract patch from %s: %w", patchedPath, err)
	}
	defer pf.Close()
	of, err := elf.Open(originalPath)
	if err != nil {
		return nil, fmt.Errorf("extract patch: original of %s: %w", patchedPath, err)
	}
	defer of.Close()
	return Extract(pf, of, patchedPath, opts)
}

// Extract extracts the patch from the patched link pf for the target
// whose original link is of. name identifies pf in messages.
func Extract(pf, of *elf.File, name string, opts Options) (*patchfile.Patch, error) {
	if pf.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("%s: only 64-bit objects are supported", name)
	}
	a, err := arch.ForMachine(pf.Machine)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if of.Machine != pf.Machine {
		return nil, fmt.Errorf("%s: machine %v differs from the original's %v", name, pf.Machine, of.Machine)
	}
	x := &extractor{pf: pf, of: of, name: name, arch: a, secIndex: map[int]uint32{}, symIndex: map[string]uint32{}, gotIdx: -1, opts: opts}
	if err := x.collectSections(); err != nil {
		return nil, err
	}
	if len(x.patch.Sections) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNoPatch)
	}
	buildID, err := elfobj.BuildID(of)
	if err != nil {
		return nil, fmt.Errorf("%s: original output: %w", name, err)
	}
	if err := x.loadSymbols(); err != nil {
		return nil, err
	}
	if err := x.collectRelocs(); err != nil {
		return nil, err
	}
	if err := x.rewriteFarRefs(); err != nil {
		return nil, err
	}
	if err := x.collectFuncs(); err != nil {
		return nil, err
	}
	p := &x.patch
	p.Arch = pf.Machine
	p.BuildID = buildID
	p.Target = opts.Target
	p.ID = opts.ID
	p.Level = opts.Level
	p.Description = opts.Description
	p.Labels = opts.Labels
	p.Created = opts.Created
	p.ToolVersion = opts.ToolVersion
	return p, nil
}

type extractor struct {
	pf, of *elf.File
	name   string
	arch   *arch.Arch
	patch  patchfile.Patch

	// secIndex maps an ELF section index of pf to its patch section.
	secIndex map[int]uint32
	// symIndex deduplicates patch symbols by their identity.
	symIndex map[string]uint32

	syms        []elf.Symbol // pf's .symtab; ELF index i is syms[i-1]
	dynDefined  map[string]elf.Symbol
	dynVersions map[string]string
	executable  bool
	tlsVaddr    uint64

	// far are references to other objects that need a slot.
	far []farRef
	// gotIdx is the patch section of the slots extraction adds (-1:
	// none yet), gotSym its section symbol; slots maps a symbol and
	// addend to the offset of its slot.
	gotIdx int
	gotSym uint32
	slots  map[[2]int64]uint64

	opts      Options
	ofFuncs   [][2]uint64
	ifuncDefs map[string][][2]uint64
}

func (x *extractor) collectSections() error {
	x.patch.Symbols = []patchfile.Symbol{{Kind: patchfile.SymNull}}
	for i, s := range x.pf.Sections {
		if !strings.HasPrefix(s.Name, patchPrefix) || s.Name == funcsSection || s.Name == strsSection {
			continue
		}
		if s.Type == elf.SHT_RELA || s.Type == elf.SHT_REL {
			continue
		}
		if s.Flags&elf.SHF_ALLOC != 0 {
			return fmt.Errorf("%s: patch section %s is allocated; the augmented assembly must emit patch sections without the \"a\" flag (docs/augmented-assembly.md §2)", x.name, s.Name)
		}
		sec := patchfile.Section{Name: s.Name, Kind: sectionKind(s), Align: s.Addralign, Size: s.Size}
		if sec.Align == 0 {
			sec.Align = 1
		}
		if s.Type == elf.SHT_NOBITS {
			sec.NoBits = true
		} else {
			data, err := s.Data()
			if err != nil {
				return fmt.Errorf("%s: read %s: %w", x.name, s.Name, err)
			}
			sec.Data = data
		}
		x.secIndex[i] = uint32(len(x.patch.Sections))
		x.patch.Sections = append(x.patch.Sections, sec)
	}
	return nil
}

// sectionKind maps the contract's flags to how the patcher maps a
// section: "x" code, "w" writable data, anything else read-only.
func sectionKind(s *elf.Section) patchfile.SectionKind {
	switch {
	case s.Flags&elf.SHF_EXECINSTR != 0:
		return patchfile.SectionText
	case s.Flags&elf.SHF_WRITE != 0:
		return patchfile.SectionData
	}
	return patchfile.SectionROData
}

func (x *extractor) loadSymbols() error {
	syms, err := x.pf.Symbols()
	if err != nil {
		return fmt.Errorf("%s: read symbol table: %w", x.name, err)
	}
	x.syms = syms
	x.executable = isExecutable(x.of)
	for _, p := range x.of.Progs {
		if p.Type == elf.PT_TLS {
			x.tlsVaddr = p.Vaddr
		}
	}
	x.dynDefined = map[string]elf.Symbol{}
	x.dynVersions = map[string]string{}
	dyn, err := x.of.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: read dynamic symbols of the original: %w", x.name, err)
	}
	for _, s := range dyn {
		if s.Version != "" {
			if _, seen := x.dynVersions[s.Name]; !seen {
				x.dynVersions[s.Name] = s.Version
			}
		}
		if s.Section != elf.SHN_UNDEF && elf.ST_BIND(s.Info) != elf.STB_LOCAL {
			x.dynDefined[s.Name] = s
		}
	}
	return nil
}

// isExecutable tells an executable (ET_EXEC, or a PIE: ET_DYN flagged
// DF_1_PIE, or with an interpreter) from a shared library, whose exported
// symbols can be interposed.
func isExecutable(f *elf.File) bool {
	if f.Type == elf.ET_EXEC {
		return true
	}
	if vals, err := f.DynValue(elf.DT_FLAGS_1); err == nil {
		for _, v := range vals {
			if elf.DynFlag1(v)&elf.DF_1_PIE != 0 {
				return true
			}
		}
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

// rela is one Elf64_Rela entry.
type rela struct {
	off    uint64
	sym    uint32
	typ    uint32
	addend int64
}

func (x *extractor) readRelas(s *elf.Section) ([]rela, error) {
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", x.name, s.Name, err)
	}
	if s.Type != elf.SHT_RELA {
		return nil, fmt.Errorf("%s: %s: REL relocations are not supported", x.name, s.Name)
	}
	if len(data)%24 != 0 {
		return nil, fmt.Errorf("%s: %s: size %d is not a multiple of the 24-byte entry", x.name, s.Name, len(data))
	}
	bo := x.pf.ByteOrder
	out := make([]rela, 0, len(data)/24)
	for i := 0; i < len(data); i += 24 {
		info := bo.Uint64(data[i+8:])
		out = append(out, rela{
			off:    bo.Uint64(data[i:]),
			sym:    uint32(info >> 32),
			typ:    uint32(info),
			addend: int64(bo.Uint64(data[i+16:])),
		})
	}
	return out, nil
}

func (x *extractor) collectRelocs() error {
	for _, s := range x.pf.Sections {
		if s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL {
			continue
		}
		pidx, ok := x.secIndex[int(s.Info)]
		if !ok {
			continue
		}
		target := x.pf.Sections[s.Info]
		relas, err := x.readRelas(s)
		if err != nil {
			return err
		}
		for _, r := range relas {
			off := r.off - target.Addr
			rerr := func(symName, reason string) error {
				return &RelocError{Object: x.name, Section: target.Name, Offset: off, Symbol: symName, Reason: reason}
			}
			_, gotRel := x.arch.GOTRelocs[r.typ]
			if _, err := x.arch.Reloc(r.typ); err != nil && !gotRel {
				return rerr(x.symName(r.sym), fmt.Sprintf("type %s is not supported by the patcher", x.arch.RelocName(r.typ)))
			}
			typ, sym, err := x.classify(r.sym)
			if err != nil {
				return rerr(x.symName(r.sym), err.Error())
			}
			if off >= target.Size {
				return rerr(x.symName(r.sym), "offset outside the section")
			}
			if gotRel {
				if typ != 0 || sym == 0 {
					return rerr(x.symName(r.sym), fmt.Sprintf("%s needs an address symbol", x.arch.GOTRelocs[r.typ]))
				}
				if err := x.gotRef(pidx, off, sym, r.addend); err != nil {
					return rerr(x.symName(r.sym), err.Error())
				}
				continue
			}
			if typ == 0 && x.needsSlot(pidx, r.typ, sym) {
				x.far = append(x.far, farRef{pfSec: int(s.Info), pidx: pidx, off: off, typ: r.typ, sym: sym, addend: r.addend})
				continue
			}
			if typ == 0 {
				typ = r.typ
			} else if r.typ != uint32(elf.R_X86_64_64) {
				return rerr(x.symName(r.sym), fmt.Sprintf("a TLS slot placeholder must be an 8-byte absolute word, not %s", elf.R_X86_64(r.typ)))
			}
			x.patch.Relocs = append(x.patch.Relocs, patchfile.Reloc{Section: pidx, Offset: off, Type: typ, Symbol: sym, Addend: r.addend})
		}
	}
	return nil
}

func (x *extractor) symName(i uint32) string {
	if i == 0 || int(i) > len(x.syms) {
		return ""
	}
	return x.syms[i-1].Name
}

// classify turns the ELF symbol with index i into a patch symbol. When
// the symbol is a TLS slot placeholder it also returns the relocation
// type the slot needs; otherwise that type is 0 (keep the original).
func (x *extractor) classify(i uint32) (uint32, uint32, error) {
	if i == 0 {
		return 0, 0, nil
	}
	if int(i) > len(x.syms) {
		return 0, 0, fmt.Errorf("symbol index %d out of range", i)
	}
	s := x.syms[i-1]
	switch s.Section {
	case elf.SHN_UNDEF:
		return x.classifyPlaceholder(s)
	case elf.SHN_ABS, elf.SHN_COMMON:
		return 0, 0, fmt.Errorf("absolute or common symbols cannot be relocated against in a patch")
	}
	sym, err := x.definedSymbol(s)
	if err != nil {
		return 0, 0, err
	}
	return 0, x.addSymbol(sym), nil
}

// definedSymbol classifies a symbol defined in pf: in a patch section, or
// in an original section of the target.
func (x *extractor) definedSymbol(s elf.Symbol) (patchfile.Symbol, error) {
	idx := int(s.Section)
	if idx <= 0 || idx >= len(x.pf.Sections) {
		return patchfile.Symbol{}, fmt.Errorf("section index %d out of range", idx)
	}
	sec := x.pf.Sections[idx]
	typ := elf.ST_TYPE(s.Info)
	name := stripVersion(s.Name)
	if typ == elf.STT_SECTION {
		name = sec.Name
	}
	if pidx, ok := x.secIndex[idx]; ok {
		kind := patchfile.SymPatch
		if (typ == elf.STT_FUNC || typ == elf.STT_OBJECT) && !strings.HasSuffix(name, ".hotpatch") {
			kind = patchfile.SymNew
		}
		if x.isIFuncDef(name, s) {
			kind, typ = patchfile.SymNew, elf.STT_GNU_IFUNC
		}
		return patchfile.Symbol{Name: name, Kind: kind, Type: typ, Section: pidx, Value: s.Value - sec.Addr, Size: s.Size}, nil
	}
	if strings.HasPrefix(sec.Name, patchPrefix) {
		return patchfile.Symbol{}, fmt.Errorf("defined in %s, which is metadata, not patch code or data", sec.Name)
	}
	if sec.Flags&elf.SHF_ALLOC == 0 {
		return patchfile.Symbol{}, fmt.Errorf("defined in %s, which the target does not load", sec.Name)
	}
	if typ == elf.STT_TLS || sec.Flags&elf.SHF_TLS != 0 {
		v := s.Value
		if typ == elf.STT_SECTION {
			// A section symbol's value is an address; a TLS symbol's is
			// already an offset in the TLS block.
			v = sec.Addr - x.tlsVaddr
		}
		return patchfile.Symbol{Name: name, Kind: patchfile.SymTLS, Type: typ, Value: v, Size: s.Size}, nil
	}
	return patchfile.Symbol{Name: name, Kind: patchfile.SymTarget, Type: typ, Value: s.Value, Size: s.Size}, nil
}

func (x *extractor) classifyPlaceholder(s elf.Symbol) (uint32, uint32, error) {
	tls, err := tlsRelocsFor(x.arch)
	if err != nil {
		return 0, 0, err
	}
	var (
		target string
		rtype  uint32
		isTLS  bool
	)
	switch {
	case strings.HasPrefix(s.Name, phIFunc):
		sym, err := x.patchIFunc(strings.TrimPrefix(s.Name, phIFunc))
		if err != nil {
			return 0, 0, err
		}
		return 0, x.addSymbol(sym), nil
	case strings.HasPrefix(s.Name, phExt):
		target = strings.TrimPrefix(s.Name, phExt)
	case strings.HasPrefix(s.Name, phTPOff):
		target, rtype, isTLS = strings.TrimPrefix(s.Name, phTPOff), tls.tpoff, true
	case strings.HasPrefix(s.Name, phDTPMod):
		target, rtype, isTLS = strings.TrimPrefix(s.Name, phDTPMod), tls.dtpmod, true
	case strings.HasPrefix(s.Name, phDTPOff):
		target, rtype, isTLS = strings.TrimPrefix(s.Name, phDTPOff), tls.dtpoff, true
	default:
		return 0, 0, fmt.Errorf("undefined, and not a hotpatch.* placeholder (docs/augmented-assembly.md §4)")
	}
	if target == "" {
		return 0, 0, fmt.Errorf("placeholder names no symbol")
	}
	sym, err := x.resolve(target, isTLS)
	if err != nil {
		return 0, 0, err
	}
	if sym.Kind == patchfile.SymExternalTLS {
		// A file-local TLS variable (static __thread, reached through
		// the local-dynamic model) has no name another object could
		// resolve: it lives in the target.
		local, n := x.localTLS(target)
		switch {
		case n == 1:
			if sym, err = x.definedSymbol(local); err != nil {
				return 0, 0, err
			}
		case n > 1 && rtype == tls.dtpmod:
			// Which of the same-named statics does not matter for the
			// module id: the null symbol stands for the target's.
			return rtype, 0, nil
		case n > 1:
			return 0, 0, fmt.Errorf("%d file-local thread-local variables are named %s; cannot tell which one the patch means", n, target)
		}
	}
	return rtype, x.addSymbol(sym), nil
}

// isIFuncDef reports whether the patch symbol s named name is a new
// ifunc: gensrc marks each with a local hotpatch.ifunc.def.NAME at the
// same place.
func (x *extractor) isIFuncDef(name string, s elf.Symbol) bool {
	if x.ifuncDefs == nil {
		x.ifuncDefs = map[string][][2]uint64{}
		for _, m := range x.syms {
			if n, ok := strings.CutPrefix(m.Name, phIFuncDef); ok {
				x.ifuncDefs[n] = append(x.ifuncDefs[n], [2]uint64{uint64(m.Section), m.Value})
			}
		}
	}
	for _, d := range x.ifuncDefs[name] {
		if d == [2]uint64{uint64(s.Section), s.Value} {
			return true
		}
	}
	return false
}

// patchIFunc finds the new ifunc name among the patch's symbols (an
// alias of its resolver, local or global) and types it as an ifunc, so
// that the patcher calls the resolver and uses what it returns.
func (x *extractor) patchIFunc(name string) (patchfile.Symbol, error) {
	var found []elf.Symbol
	for _, s := range x.syms {
		if stripVersion(s.Name) != name || s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE {
			continue
		}
		if _, inPatch := x.secIndex[int(s.Section)]; inPatch {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return patchfile.Symbol{}, fmt.Errorf("new ifunc %s is not defined in the patch sections", name)
	case 1:
	default:
		return patchfile.Symbol{}, fmt.Errorf("%d new ifuncs are named %s; give them distinct names", len(found), name)
	}
	sym, err := x.definedSymbol(found[0])
	if err != nil {
		return sym, err
	}
	if x.patch.Sections[sym.Section].Kind != patchfile.SectionText {
		return sym, fmt.Errorf("new ifunc %s: its resolver is not in patch code", name)
	}
	sym.Name, sym.Kind, sym.Type = name, patchfile.SymNew, elf.STT_GNU_IFUNC
	return sym, nil
}

// localTLS finds the file-local thread-local variables named name defined
// in the target, and returns one of them and how many there are.
func (x *extractor) localTLS(name string) (elf.Symbol, int) {
	var found elf.Symbol
	n := 0
	for _, s := range x.syms {
		if elf.ST_BIND(s.Info) != elf.STB_LOCAL || elf.ST_TYPE(s.Info) != elf.STT_TLS || s.Name != name {
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE {
			continue
		}
		if _, inPatch := x.secIndex[int(s.Section)]; inPatch {
			continue
		}
		found = s
		n++
	}
	return found, n
}

// resolve finds what a placeholder's symbol S stands for, in the order of
// docs/augmented-assembly.md §4: a definition in a patch section, then a
// definition in the target that cannot be interposed, then a symbol of
// another object by name and version.
func (x *extractor) resolve(name string, tls bool) (patchfile.Symbol, error) {
	def, ok, err := x.findDefinition(name)
	if err != nil {
		return patchfile.Symbol{}, err
	}
	if ok {
		if _, inPatch := x.secIndex[int(def.Section)]; inPatch {
			return x.definedSymbol(def)
		}
		_, exported := x.dynDefined[name]
		if x.executable || !exported {
			sym, err := x.definedSymbol(def)
			if err != nil {
				return sym, err
			}
			if tls != (sym.Kind == patchfile.SymTLS) {
				return sym, fmt.Errorf("%s is used as a %s variable but defined as %s", name, map[bool]string{true: "thread-local", false: "non-thread-local"}[tls], elf.ST_TYPE(def.Info))
			}
			return sym, nil
		}
	}
	kind := patchfile.SymExternal
	typ := elf.STT_NOTYPE
	if tls {
		kind, typ = patchfile.SymExternalTLS, elf.STT_TLS
	}
	if d, ok := x.dynDefined[name]; ok {
		typ = elf.ST_TYPE(d.Info)
	}
	return patchfile.Symbol{Name: name, Kind: kind, Type: typ, Version: x.dynVersions[name]}, nil
}

// findDefinition looks for a definition of name in pf's symbol table: a
// global or weak one first, then one that was global and hidden before
// the link. ld turns those into locals and lists them after an STT_FILE
// symbol with an empty name, apart from each file's own statics. Plain
// static symbols are never a match: another translation unit could not
// have referred to them.
func (x *extractor) findDefinition(name string) (elf.Symbol, bool, error) {
	var hidden []elf.Symbol
	localized := false
	for _, s := range x.syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FILE {
			localized = s.Name == ""
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE {
			continue
		}
		if stripVersion(s.Name) != name {
			continue
		}
		switch elf.ST_BIND(s.Info) {
		case elf.STB_GLOBAL, elf.STB_WEAK:
			return s, true, nil
		case elf.STB_LOCAL:
			vis := elf.ST_VISIBILITY(s.Other)
			if localized || vis == elf.STV_HIDDEN || vis == elf.STV_INTERNAL {
				hidden = append(hidden, s)
			}
		}
	}
	switch len(hidden) {
	case 0:
		return elf.Symbol{}, false, nil
	case 1:
		return hidden[0], true, nil
	}
	return elf.Symbol{}, false, fmt.Errorf("%d hidden definitions of %s in the link; cannot tell which one the patch means", len(hidden), name)
}

// stripVersion removes the @VERSION or @@VERSION that ld appends to the
// .symtab names of versioned symbols (copy-relocated stdout@GLIBC_2.2.5).
func stripVersion(name string) string {
	if i := strings.IndexByte(name, '@'); i > 0 {
		return name[:i]
	}
	return name
}

func (x *extractor) addSymbol(s patchfile.Symbol) uint32 {
	k := fmt.Sprintf("%d\x00%s\x00%d\x00%d\x00%s\x00%d", s.Kind, s.Name, s.Section, s.Value, s.Version, s.Type)
	if i, ok := x.symIndex[k]; ok {
		return i
	}
	i := uint32(len(x.patch.Symbols))
	x.patch.Symbols = append(x.patch.Symbols, s)
	x.symIndex[k] = i
	return i
}

// collectFuncs reads the function table (§5): per entry the old entry,
// the new entry and the name offset through their relocations, and the
// flags word from the section contents.
func (x *extractor) collectFuncs() error {
	funcs := x.pf.Section(funcsSection)
	if funcs == nil {
		return nil
	}
	data, err := funcs.Data()
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", x.name, funcsSection, err)
	}
	if len(data)%funcEntry != 0 {
		return &FuncTableError{Object: x.name, Entry: len(data) / funcEntry, Reason: fmt.Sprintf("section size %d is not a multiple of %d", len(data), funcEntry)}
	}
	var strs []byte
	strSec := x.pf.Section(strsSection)
	if strSec != nil {
		if strs, err = strSec.Data(); err != nil {
			return fmt.Errorf("%s: read %s: %w", x.name, strsSection, err)
		}
	}
	byOffset := map[uint64]rela{}
	for _, s := range x.pf.Sections {
		if (s.Type == elf.SHT_RELA || s.Type == elf.SHT_REL) && int(s.Info) < len(x.pf.Sections) && x.pf.Sections[s.Info] == funcs {
			relas, err := x.readRelas(s)
			if err != nil {
				return err
			}
			for _, r := range relas {
				byOffset[r.off-funcs.Addr] = r
			}
		}
	}
	// An inline or template function lives in a COMDAT group in every
	// translation unit that uses it, and the link keeps one copy; each
	// unit that changed it brings its own replacement and table entry.
	// The replacements are the same code, so the first one serves.
	replaced := map[uint64]bool{}
	for n := 0; n < len(data)/funcEntry; n++ {
		base := uint64(n * funcEntry)
		fail := func(format string, args ...any) error {
			return &FuncTableError{Object: x.name, Entry: n, Reason: fmt.Sprintf(format, args...)}
		}
		oldR, ok1 := byOffset[base]
		newR, ok2 := byOffset[base+8]
		nameR, ok3 := byOffset[base+16]
		if !ok1 || !ok2 || !ok3 {
			return fail("missing relocations (was the link made with -Wl,-q?)")
		}
		name, err := x.tableName(nameR, strSec, strs)
		if err != nil {
			return fail("name: %v", err)
		}
		flags := patchfile.FuncFlags(x.pf.ByteOrder.Uint64(data[base+24:]))
		oldSym, err := x.symbolAt(oldR)
		if err != nil {
			return fail("old entry of %s: %v", name, err)
		}
		if _, inPatch := x.secIndex[int(oldSym.Section)]; inPatch || oldSym.Section == elf.SHN_UNDEF {
			return fail("old entry of %s is not in the target", name)
		}
		oldAddr := uint64(int64(oldSym.Value) + oldR.addend)
		oldSize, ok := x.sizeAt(oldAddr, int(oldSym.Section), name, false)
		if !ok {
			return fail("no function %s at %#x in the link", name, oldAddr)
		}
		if replaced[oldAddr] {
			continue
		}
		replaced[oldAddr] = true
		if flags&patchfile.FuncRangeOnly == 0 {
			x.checkRoom(name, oldAddr, oldSize)
		}
		newSym, err := x.symbolAt(newR)
		if err != nil {
			return fail("new entry of %s: %v", name, err)
		}
		pidx, inPatch := x.secIndex[int(newSym.Section)]
		if !inPatch {
			return fail("new entry of %s is not in a patch section", name)
		}
		newSec := x.pf.Sections[newSym.Section]
		newOff := uint64(int64(newSym.Value)+newR.addend) - newSec.Addr
		newSize, ok := x.sizeAt(newOff+newSec.Addr, int(newSym.Section), "", true)
		if !ok {
			return fail("no function symbol at %s+%#x for the replacement of %s", newSec.Name, newOff, name)
		}
		newName := x.funcNameAt(newOff+newSec.Addr, int(newSym.Section))
		if newName == "" {
			newName = name + ".hotpatch"
		}
		idx := x.addSymbol(patchfile.Symbol{Name: newName, Kind: patchfile.SymPatch, Type: elf.STT_FUNC, Section: pidx, Value: newOff, Size: newSize})
		x.patch.Funcs = append(x.patch.Funcs, patchfile.Func{
			Name: name, OldOffset: oldAddr, OldSize: oldSize,
			NewSymbol: idx, NewSize: newSize, Flags: flags,
		})
	}
	return nil
}

func (x *extractor) symbolAt(r rela) (elf.Symbol, error) {
	if r.sym == 0 || int(r.sym) > len(x.syms) {
		return elf.Symbol{}, fmt.Errorf("relocation has no symbol")
	}
	s := x.syms[r.sym-1]
	if s.Section == elf.SHN_UNDEF {
		return s, fmt.Errorf("%s is undefined in the link", s.Name)
	}
	if s.Section >= elf.SHN_LORESERVE || int(s.Section) >= len(x.pf.Sections) {
		return s, fmt.Errorf("%s has no section", s.Name)
	}
	return s, nil
}

func (x *extractor) tableName(r rela, strSec *elf.Section, strs []byte) (string, error) {
	s, err := x.symbolAt(r)
	if err != nil {
		return "", err
	}
	if strSec == nil || x.pf.Sections[s.Section] != strSec {
		return "", fmt.Errorf("does not point into %s", strsSection)
	}
	off := int64(s.Value) + r.addend - int64(strSec.Addr)
	if off < 0 || off >= int64(len(strs)) {
		return "", fmt.Errorf("offset %d outside %s", off, strsSection)
	}
	end := bytes.IndexByte(strs[off:], 0)
	if end < 0 {
		return "", fmt.Errorf("unterminated name at %s+%d", strsSection, off)
	}
	return string(strs[off : off+int64(end)]), nil
}

// sizeAt finds the size of the function symbol at addr in section sec,
// preferring one named name when several start there (aliases).
func (x *extractor) sizeAt(addr uint64, sec int, name string, any bool) (uint64, bool) {
	var (
		found bool
		size  uint64
	)
	for _, s := range x.syms {
		if int(s.Section) != sec || s.Value != addr || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		if stripVersion(s.Name) == name {
			return s.Size, true
		}
		if !found || any {
			found, size = true, s.Size
		}
	}
	return size, found
}

func (x *extractor) funcNameAt(addr uint64, sec int) string {
	for _, s := range x.syms {
		if int(s.Section) == sec && s.Value == addr && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			return s.Name
		}
	}
	return ""
}
