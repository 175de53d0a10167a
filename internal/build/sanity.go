package build

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// LayoutError says that the patched link placed original sections or
// symbols elsewhere than the original link: the patch would then not fit
// the deployed binary.
type LayoutError struct {
	Output   string
	Moved    []Moved
	Sections []string
}

// Moved is an original symbol whose address differs in the patched link.
type Moved struct {
	Name     string
	Original []uint64
	Patched  []uint64
}

func (e *LayoutError) Error() string {
	var parts []string
	for i, m := range e.Moved {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Moved)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s -> %s", m.Name, hexList(m.Original), hexList(m.Patched)))
	}
	for i, s := range e.Sections {
		if i == 3 {
			break
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("sanity check of %s failed: the patched link moved original code or data (%s); the patch would not fit the original binary. This is a bug in hotpatch: please report it with the build log", e.Output, strings.Join(parts, "; "))
}

func hexList(vs []uint64) string {
	if len(vs) == 0 {
		return "missing"
	}
	var s []string
	for _, v := range vs {
		s = append(s, fmt.Sprintf("%#x", v))
	}
	return strings.Join(s, ",")
}

// layoutIgnored are the symbols a patched link may move: the end markers
// that follow the non-allocated patch sections' neighbours, and the
// transactional-memory clone table end that -q keeps alive.
var layoutIgnored = map[string]bool{
	"_end": true, "_edata": true, "__bss_start": true, "__TMC_END__": true, "end": true, "edata": true,
}

// CheckLayout confirms that every symbol of the original link has the same
// address in the patched link and that every allocated section kept its
// address and size.
func CheckLayout(originalPath, patchedPath string) error {
	of, err := elf.Open(originalPath)
	if err != nil {
		return fmt.Errorf("sanity check: %w", err)
	}
	defer of.Close()
	pf, err := elf.Open(patchedPath)
	if err != nil {
		return fmt.Errorf("sanity check: %w", err)
	}
	defer pf.Close()
	le := &LayoutError{Output: patchedPath}

	for _, s := range of.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Name == ".tm_clone_table" {
			continue
		}
		p := pf.Section(s.Name)
		switch {
		case p == nil:
			le.Sections = append(le.Sections, fmt.Sprintf("section %s missing", s.Name))
		case p.Addr != s.Addr || p.Size != s.Size:
			le.Sections = append(le.Sections, fmt.Sprintf("section %s %#x+%#x -> %#x+%#x", s.Name, s.Addr, s.Size, p.Addr, p.Size))
		}
	}

	origSyms, err := layoutSymbols(of, nil)
	if err != nil {
		return fmt.Errorf("sanity check of %s: %w", originalPath, err)
	}
	patchSecs := map[int]bool{}
	for i, s := range pf.Sections {
		if strings.HasPrefix(s.Name, ".hotpatch.") {
			patchSecs[i] = true
		}
	}
	patchedSyms, err := layoutSymbols(pf, patchSecs)
	if err != nil {
		return fmt.Errorf("sanity check of %s: %w", patchedPath, err)
	}
	names := make([]string, 0, len(origSyms))
	for n := range origSyms {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o, p := origSyms[n], patchedSyms[n]
		if !equalSorted(o, p) {
			le.Moved = append(le.Moved, Moved{Name: n, Original: o, Patched: p})
		}
	}
	// Report in address order: the first symbol that moved points at the
	// cause.
	sort.SliceStable(le.Moved, func(i, j int) bool { return le.Moved[i].Original[0] < le.Moved[j].Original[0] })
	if len(le.Moved) > 0 || len(le.Sections) > 0 {
		return le
	}
	return nil
}

// layoutSymbols maps each symbol name to its sorted addresses (static
// functions of different files may share a name), leaving out local
// labels, file and section symbols, the ignored markers and anything
// defined in skip.
func layoutSymbols(f *elf.File, skip map[int]bool) (map[string][]uint64, error) {
	syms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	out := map[string][]uint64{}
	for _, s := range syms {
		t := elf.ST_TYPE(s.Info)
		if s.Name == "" || t == elf.STT_FILE || t == elf.STT_SECTION || s.Section == elf.SHN_UNDEF {
			continue
		}
		if strings.HasPrefix(s.Name, ".L") || layoutIgnored[s.Name] {
			continue
		}
		if skip[int(s.Section)] {
			continue
		}
		out[s.Name] = append(out[s.Name], s.Value)
	}
	for _, v := range out {
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	}
	return out, nil
}

func equalSorted(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
