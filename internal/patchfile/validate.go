package patchfile

import (
	"fmt"
	"math/bits"
)

// Validate checks that p is self-consistent: every index points at
// something, sizes agree with data, and kinds are known. The writer refuses
// an invalid patch and the reader refuses an invalid file, so the patcher
// can index without checking again.
func (p *Patch) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(p.BuildID) == 0 {
		bad("the target build-id is empty")
	}
	if p.ID == "" {
		bad("the patch id is empty")
	}
	for i, s := range p.Sections {
		switch s.Kind {
		case SectionText, SectionROData, SectionData:
		default:
			bad("section %d (%s): unknown kind %d", i, s.Name, s.Kind)
		}
		if s.Align == 0 || bits.OnesCount64(s.Align) != 1 {
			bad("section %d (%s): alignment %d is not a power of two", i, s.Name, s.Align)
		}
		if s.NoBits && len(s.Data) != 0 {
			bad("section %d (%s): a nobits section carries %d bytes of data", i, s.Name, len(s.Data))
		}
		if !s.NoBits && uint64(len(s.Data)) != s.Size {
			bad("section %d (%s): size %d but %d bytes of data", i, s.Name, s.Size, len(s.Data))
		}
	}
	if len(p.Symbols) == 0 || p.Symbols[0].Kind != SymNull {
		bad("symbol 0 must be the null symbol")
	}
	for i, s := range p.Symbols {
		switch s.Kind {
		case SymNull:
			if i != 0 {
				bad("symbol %d (%s): only symbol 0 may be null", i, s.Name)
			}
		case SymNew, SymPatch:
			if int(s.Section) >= len(p.Sections) {
				bad("symbol %d (%s): section %d does not exist", i, s.Name, s.Section)
			} else if s.Value > p.Sections[s.Section].Size {
				bad("symbol %d (%s): offset %d is past the end of section %s", i, s.Name, s.Value, p.Sections[s.Section].Name)
			}
		case SymTarget, SymTLS:
		case SymExternal, SymExternalTLS:
			if s.Name == "" {
				bad("symbol %d: an external symbol needs a name", i)
			}
		default:
			bad("symbol %d (%s): unknown kind %d", i, s.Name, s.Kind)
		}
	}
	for i, r := range p.Relocs {
		if int(r.Section) >= len(p.Sections) {
			bad("relocation %d: section %d does not exist", i, r.Section)
			continue
		}
		sec := p.Sections[r.Section]
		if sec.NoBits {
			bad("relocation %d: place in nobits section %s", i, sec.Name)
		}
		if r.Offset >= sec.Size {
			bad("relocation %d: offset %d is past the end of section %s (%d bytes)", i, r.Offset, sec.Name, sec.Size)
		}
		if int(r.Symbol) >= len(p.Symbols) {
			bad("relocation %d: symbol %d does not exist", i, r.Symbol)
		}
	}
	for i, f := range p.Funcs {
		if f.Name == "" {
			bad("function %d: no name", i)
		}
		if int(f.NewSymbol) >= len(p.Symbols) {
			bad("function %d (%s): symbol %d does not exist", i, f.Name, f.NewSymbol)
		} else if !p.Symbols[f.NewSymbol].Kind.InPatch() {
			bad("function %d (%s): replacement symbol %s is not in the patch", i, f.Name, p.Symbols[f.NewSymbol].Name)
		}
		if f.OldSize == 0 {
			bad("function %d (%s): old size is 0", i, f.Name)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// One line: the first problem is the one to fix first.
	if len(errs) > 1 {
		return fmt.Errorf("invalid patch %q: %w (and %d more problems)", p.ID, errs[0], len(errs)-1)
	}
	return fmt.Errorf("invalid patch %q: %w", p.ID, errs[0])
}
