package elfobj

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrSymbolNotFound means no defined symbol matches a name (and version).
var ErrSymbolNotFound = errors.New("symbol not found")

// ErrAmbiguousSymbol means several local symbols share a name (static
// functions or variables of different translation units) and nothing says
// which one is meant.
var ErrAmbiguousSymbol = errors.New("symbol name is ambiguous")

// SymbolError reports a failed lookup; it wraps ErrSymbolNotFound or
// ErrAmbiguousSymbol.
type SymbolError struct {
	Object string
	// Name is the name as asked, with its version if one was given.
	Name string
	// Candidates are the symbols that made the name ambiguous.
	Candidates []Symbol
	Err        error
}

func (e *SymbolError) Error() string {
	if errors.Is(e.Err, ErrAmbiguousSymbol) {
		addrs := make([]string, len(e.Candidates))
		for i, c := range e.Candidates {
			addrs[i] = fmt.Sprintf("%#x", c.Value)
		}
		return fmt.Sprintf("symbol %s in %s: %d local symbols share the name (at %s); name the translation unit's symbol by address instead",
			e.Name, e.Object, len(e.Candidates), strings.Join(addrs, ", "))
	}
	return fmt.Sprintf("symbol %s in %s: %v", e.Name, e.Object, e.Err)
}

func (e *SymbolError) Unwrap() error { return e.Err }

// Symbol is an entry of .dynsym or .symtab.
type Symbol struct {
	// Name is the bare name, without any "@VERSION" suffix.
	Name string
	// Version is the symbol version: the one it defines for a defined
	// symbol, the one it binds to for an undefined one. Empty when the
	// symbol is unversioned or in the base version.
	Version string
	// NonDefault marks a version that is not the default one ("foo@V1"
	// rather than "foo@@V2"): a reference without a version never binds to
	// it.
	NonDefault bool
	// Library is the file a versioned undefined symbol is expected from
	// (from .gnu.version_r), such as "libc.so.6".
	Library    string
	Value      uint64
	Size       uint64
	Type       elf.SymType
	Bind       elf.SymBind
	Visibility elf.SymVis
	Section    elf.SectionIndex
	// Dynamic says the entry comes from .dynsym.
	Dynamic bool
}

// Defined reports whether the object itself defines the symbol.
func (s Symbol) Defined() bool { return s.Section != elf.SHN_UNDEF }

// IsFunc reports whether the symbol is code: a function or an indirect
// function (ifunc), whose value is the resolver rather than the
// implementation.
func (s Symbol) IsFunc() bool { return s.Type == elf.STT_FUNC || s.Type == elf.STT_GNU_IFUNC }

// IsIFunc reports an STT_GNU_IFUNC symbol: its value is the address of a
// resolver that returns the implementation.
func (s Symbol) IsIFunc() bool { return s.Type == elf.STT_GNU_IFUNC }

// IsTLS reports a thread-local variable: its value is an offset in the
// object's TLS block, not an address.
func (s Symbol) IsTLS() bool { return s.Type == elf.STT_TLS }

// Exported reports whether other objects can bind to the symbol: it is in
// .dynsym, defined, global or weak, with default or protected visibility.
func (s Symbol) Exported() bool {
	if !s.Dynamic || !s.Defined() {
		return false
	}
	switch s.Bind {
	case elf.STB_GLOBAL, elf.STB_WEAK, stbGNUUnique:
	default:
		return false
	}
	return s.Visibility == elf.STV_DEFAULT || s.Visibility == elf.STV_PROTECTED
}

// String formats the symbol as the dynamic linker names it: "memcpy",
// "memcpy@@GLIBC_2.14" (default version) or "memcpy@GLIBC_2.2.5".
func (s Symbol) String() string {
	switch {
	case s.Version == "" || s.Version == s.Name && s.Section == elf.SHN_ABS:
		// The second case is the symbol a version definition adds for
		// itself (LIBT_1 in version LIBT_1).
		return s.Name
	case s.NonDefault || !s.Defined() || s.Library != "":
		// A defined symbol with a needed version is a copy (stdout in an
		// executable): it binds to that version of its library.
		return s.Name + "@" + s.Version
	}
	return s.Name + "@@" + s.Version
}

// ParseVersionedName splits "name@VER" or "name@@VER". explicitDefault is
// true for "@@".
func ParseVersionedName(full string) (name, version string, explicitDefault bool) {
	i := strings.IndexByte(full, '@')
	if i < 0 {
		return full, "", false
	}
	name, version = full[:i], full[i+1:]
	if strings.HasPrefix(version, "@") {
		return name, version[1:], true
	}
	return name, version, false
}

func (o *Object) readSymbols(f *elf.File) ([]Symbol, error) {
	dyn, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read .dynsym: %w", err)
	}
	dynsyms := make([]Symbol, 0, len(dyn))
	for _, s := range dyn {
		sym := fromELF(s, true)
		if s.HasVersion {
			sym.Version = s.Version
			sym.Library = s.Library
			sym.NonDefault = s.VersionIndex.IsHidden()
		}
		dynsyms = append(dynsyms, sym)
	}
	tab, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read .symtab: %w", err)
	}
	o.symbols = make([]Symbol, 0, len(dynsyms)+len(tab))
	o.symbols = append(o.symbols, dynsyms...)
	for _, s := range tab {
		sym := fromELF(s, false)
		if sym.Type == elf.STT_SECTION || sym.Type == elf.STT_FILE || sym.Name == "" {
			continue
		}
		// GNU ld writes versioned names into .symtab ("foo@V1",
		// "foo@@V2", "memcpy@GLIBC_2.14"); keep the name bare and the
		// version beside it, as .dynsym has them.
		if name, ver, def := ParseVersionedName(sym.Name); ver != "" {
			sym.Name, sym.Version = name, ver
			sym.NonDefault = !def && sym.Defined()
		}
		o.symbols = append(o.symbols, sym)
	}
	o.indexSymbols()
	return dynsyms, nil
}

func fromELF(s elf.Symbol, dynamic bool) Symbol {
	return Symbol{
		Name:       s.Name,
		Value:      s.Value,
		Size:       s.Size,
		Type:       elf.ST_TYPE(s.Info),
		Bind:       elf.ST_BIND(s.Info),
		Visibility: elf.ST_VISIBILITY(s.Other),
		Section:    s.Section,
		Dynamic:    dynamic,
	}
}

func (o *Object) indexSymbols() {
	o.byName = make(map[string][]int32, len(o.symbols))
	for i, s := range o.symbols {
		o.byName[s.Name] = append(o.byName[s.Name], int32(i))
		if s.IsFunc() && s.Defined() && s.Section != elf.SHN_ABS {
			o.funcs = append(o.funcs, int32(i))
		}
	}
	sort.SliceStable(o.funcs, func(i, j int) bool {
		a, b := &o.symbols[o.funcs[i]], &o.symbols[o.funcs[j]]
		if a.Value != b.Value {
			return a.Value < b.Value
		}
		return betterName(a, b)
	})
	// Aliases (memcpy and __memcpy, foo and foo_v1) share an address;
	// keep the best name for messages.
	kept := o.funcs[:0]
	for _, i := range o.funcs {
		if n := len(kept); n > 0 && o.symbols[kept[n-1]].Value == o.symbols[i].Value {
			if o.symbols[i].Size > o.symbols[kept[n-1]].Size {
				kept[n-1] = i
			}
			continue
		}
		kept = append(kept, i)
	}
	o.funcs = kept
	o.funcMaxEnd = make([]uint64, len(o.funcs))
	var maxEnd uint64
	for k, i := range o.funcs {
		if end := o.symbols[i].Value + o.symbols[i].Size; end > maxEnd {
			maxEnd = end
		}
		o.funcMaxEnd[k] = maxEnd
	}
}

// betterName orders aliases for messages: global before local, the
// default version before others, .dynsym before .symtab, then fewer
// leading underscores.
func betterName(a, b *Symbol) bool {
	if (a.Bind == elf.STB_LOCAL) != (b.Bind == elf.STB_LOCAL) {
		return b.Bind == elf.STB_LOCAL
	}
	if a.NonDefault != b.NonDefault {
		return b.NonDefault
	}
	ua := len(a.Name) - len(strings.TrimLeft(a.Name, "_"))
	ub := len(b.Name) - len(strings.TrimLeft(b.Name, "_"))
	if ua != ub {
		return ua < ub
	}
	return a.Dynamic && !b.Dynamic
}

// Symbols returns every symbol of .dynsym, then of .symtab (without
// section and file symbols). The slice is shared: do not modify it.
func (o *Object) Symbols() []Symbol { return o.symbols }

// SymbolsNamed returns every entry called name (bare, without version),
// defined or not, from both tables.
func (o *Object) SymbolsNamed(name string) []Symbol {
	idx := o.byName[name]
	out := make([]Symbol, len(idx))
	for i, k := range idx {
		out[i] = o.symbols[k]
	}
	return out
}

// Lookup finds the symbol the object defines under name, which may carry
// a version: "memcpy" (the default version, never a non-default one),
// "memcpy@GLIBC_2.2.5" (that exact version) or "memcpy@@GLIBC_2.14" (that
// version, and only if it is the default). Global symbols win over local
// ones, and .dynsym over .symtab. Several local symbols of the same name
// and no global one give an ErrAmbiguousSymbol.
func (o *Object) Lookup(name string) (Symbol, error) {
	return o.lookup(name, false)
}

// LookupExported is Lookup restricted to the symbols other objects can
// bind to (Symbol.Exported): what the dynamic linker would find in this
// object.
func (o *Object) LookupExported(name string) (Symbol, error) {
	return o.lookup(name, true)
}

func (o *Object) lookup(full string, exportedOnly bool) (Symbol, error) {
	name, version, wantDefault := ParseVersionedName(full)
	var global *Symbol
	var locals []Symbol
	for _, k := range o.byName[name] {
		s := &o.symbols[k]
		if !s.Defined() || exportedOnly && !s.Exported() {
			continue
		}
		if !versionMatches(s, version, wantDefault) {
			continue
		}
		if s.Bind != elf.STB_LOCAL {
			// .dynsym entries come first, so the first global seen is the
			// one with full version information.
			if global == nil {
				global = s
			}
			continue
		}
		dup := false
		for _, l := range locals {
			dup = dup || l.Value == s.Value
		}
		if !dup {
			locals = append(locals, *s)
		}
	}
	switch {
	case global != nil:
		return *global, nil
	case len(locals) == 1:
		return locals[0], nil
	case len(locals) > 1:
		return Symbol{}, &SymbolError{Object: o.Path, Name: full, Candidates: locals, Err: ErrAmbiguousSymbol}
	}
	return Symbol{}, &SymbolError{Object: o.Path, Name: full, Err: ErrSymbolNotFound}
}

func versionMatches(s *Symbol, version string, wantDefault bool) bool {
	if version == "" {
		return !s.NonDefault
	}
	if s.Version != version {
		return false
	}
	return !wantDefault || !s.NonDefault
}

// FuncAt returns the function whose range holds the link-time address
// addr, for messages ("in parse_header+0x1c"). A symbol of size zero
// (hand-written assembly) holds only its first byte.
func (o *Object) FuncAt(addr uint64) (Symbol, bool) {
	k := sort.Search(len(o.funcs), func(i int) bool { return o.symbols[o.funcs[i]].Value > addr }) - 1
	for ; k >= 0; k-- {
		s := &o.symbols[o.funcs[k]]
		if addr == s.Value || addr-s.Value < s.Size {
			return *s, true
		}
		// Only a function that starts earlier and ends later can still
		// hold addr; the running maximum says whether one exists.
		if k == 0 || o.funcMaxEnd[k-1] <= addr {
			break
		}
	}
	return Symbol{}, false
}

// FuncBefore returns the function that starts last at or before addr,
// whether or not it covers addr. A function symbol without a size (hand
// written assembly) covers nothing by FuncAt, yet its code runs on past
// its start: callers that look for bytes outside every function must not
// take what follows it for padding.
func (o *Object) FuncBefore(addr uint64) (Symbol, bool) {
	k := sort.Search(len(o.funcs), func(i int) bool { return o.symbols[o.funcs[i]].Value > addr }) - 1
	if k < 0 {
		return Symbol{}, false
	}
	return o.symbols[o.funcs[k]], true
}

// BoundVersion returns the version and library an undefined dynamic
// symbol of this object binds to, from .gnu.version_r, such as
// ("GLIBC_2.14", "libc.so.6") for memcpy. ok is false when the object does
// not import name or imports it unversioned.
func (o *Object) BoundVersion(name string) (version, library string, ok bool) {
	for _, k := range o.byName[name] {
		s := &o.symbols[k]
		if s.Dynamic && !s.Defined() && s.Version != "" {
			return s.Version, s.Library, true
		}
	}
	return "", "", false
}

// Imports returns the undefined symbols of .dynsym: what the object
// expects other loaded objects to provide, with the versions it binds to.
func (o *Object) Imports() []Symbol {
	var out []Symbol
	for _, s := range o.symbols {
		if s.Dynamic && !s.Defined() {
			out = append(out, s)
		}
	}
	return out
}

// stbGNUUnique is STB_GNU_UNIQUE (STB_LOOS), which debug/elf does not
// name: g++ gives it to static members of inline functions and templates.
const stbGNUUnique elf.SymBind = 10
