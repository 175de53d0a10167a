// Package patchertest builds patch files for tests from hand-written C:
// the real gcc compiles the patch code, and the object's sections, symbols
// and relocations become a patchfile.Patch, as extraction does for a real
// build. It exists until tests can use hotpatch build for every case, and
// stays for the cases a source diff cannot express.
package patchertest

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// Spec describes a hand-written patch: C source compiled by the real
// gcc into an object whose sections and relocations become a patch file,
// as extraction does for a real build. References the object leaves
// undefined resolve against the target's symbol table (its functions,
// data, static locals, TLS) or, failing that, by name in other objects.
type Spec struct {
	ID     string
	Level  uint32
	Target string // the fixture binary or library the patch is for
	Source string
	Flags  []string
	// CXX compiles Source as C++ with g++.
	CXX bool
	// Replace maps old function names in the target to their
	// replacements in Source.
	Replace map[string]string
}

// Build compiles spec and converts the object. GOT-relative and TLS
// references get slots in a patch data section, as the augmented assembly
// contract prescribes (docs/augmented-assembly.md §4).
func Build(t testing.TB, spec Spec) *patchfile.Patch {
	t.Helper()
	dir := t.TempDir()
	src, compiler := filepath.Join(dir, "patch.c"), "gcc"
	if spec.CXX {
		src, compiler = filepath.Join(dir, "patch.cc"), "g++"
	}
	if err := os.WriteFile(src, []byte(spec.Source), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "patch.o")
	args := append([]string{"-c", "-O2", "-o", obj, src}, spec.Flags...)
	if out, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", compiler, strings.Join(args, " "), err, out)
	}
	p, err := FromObject(obj, spec)
	if err != nil {
		t.Fatalf("convert %s: %v", obj, err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("hand-built patch: %v", err)
	}
	// Round trip through the file format, as the command line would.
	b, err := patchfile.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// FromObject turns a relocatable object compiled from spec.Source into a
// patch for spec.Target; programs (the pause benchmark) use it directly.
func FromObject(path string, spec Spec) (*patchfile.Patch, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	target, err := elfobj.Open(spec.Target)
	if err != nil {
		return nil, err
	}
	tf, err := elf.Open(spec.Target)
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	tsyms, _ := tf.Symbols()
	p := &patchfile.Patch{Arch: elf.EM_X86_64, BuildID: target.BuildID, Target: filepath.Base(spec.Target),
		ID: spec.ID, Level: spec.Level, Created: time.Unix(0, 0).UTC(), ToolVersion: "test",
		Symbols: []patchfile.Symbol{{}}}
	secIdx := map[int]uint32{}
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 || strings.HasPrefix(s.Name, ".note") {
			continue
		}
		ps := patchfile.Section{Name: s.Name, Align: max(s.Addralign, 1), Size: s.Size}
		switch {
		case s.Flags&elf.SHF_EXECINSTR != 0:
			ps.Kind = patchfile.SectionText
		case s.Flags&elf.SHF_WRITE != 0:
			ps.Kind = patchfile.SectionData
		default:
			ps.Kind = patchfile.SectionROData
		}
		if s.Name == ".eh_frame" {
			ps.Name = ".hotpatch.eh_frame"
		}
		if s.Type == elf.SHT_NOBITS {
			ps.NoBits = true
		} else if ps.Data, err = s.Data(); err != nil {
			return nil, err
		}
		secIdx[i] = uint32(len(p.Sections))
		p.Sections = append(p.Sections, ps)
	}
	got := uint32(len(p.Sections))
	p.Sections = append(p.Sections, patchfile.Section{Name: ".hotpatch.got", Kind: patchfile.SectionData, Align: 8})
	osyms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	exported := map[string]bool{}
	if dyn, err := tf.DynamicSymbols(); err == nil {
		for _, s := range dyn {
			if s.Section != elf.SHN_UNDEF {
				exported[s.Name] = true
			}
		}
	}
	symIdx := map[int]uint32{}
	symbol := func(elfIdx int) uint32 {
		if elfIdx == 0 {
			return 0
		}
		if i, ok := symIdx[elfIdx]; ok {
			return i
		}
		s := osyms[elfIdx-1]
		ps := patchfile.Symbol{Name: s.Name, Type: elf.ST_TYPE(s.Info), Size: s.Size}
		if sec, ok := secIdx[int(s.Section)]; ok {
			ps.Kind, ps.Section, ps.Value = patchfile.SymPatch, sec, s.Value
			if elf.ST_TYPE(s.Info) == elf.STT_SECTION {
				ps.Name = f.Sections[s.Section].Name
			} else if elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
				ps.Kind = patchfile.SymNew
			}
		} else {
			ps.Kind = patchfile.SymExternal
			if ps.Type == elf.STT_TLS {
				ps.Kind = patchfile.SymExternalTLS
			}
			for _, ts := range tsyms {
				// Exported names stay external, so that the patcher's
				// lookup in load order (executable first) is what
				// resolves them, copy relocations included.
				if ts.Name != s.Name || ts.Section == elf.SHN_UNDEF || exported[s.Name] {
					continue
				}
				if elf.ST_TYPE(ts.Info) == elf.STT_TLS {
					ps.Kind, ps.Value = patchfile.SymTLS, ts.Value
				} else {
					ps.Kind, ps.Value = patchfile.SymTarget, ts.Value
				}
				break
			}
		}
		idx := uint32(len(p.Symbols))
		p.Symbols = append(p.Symbols, ps)
		symIdx[elfIdx] = idx
		return idx
	}
	slots := map[string]uint64{}
	slot := func(key string, fill func(off uint64)) uint32 {
		off, ok := slots[key]
		if !ok {
			g := &p.Sections[got]
			off = g.Size
			g.Size += 8
			if strings.HasPrefix(key, "gd:") || strings.HasPrefix(key, "ld:") {
				g.Size += 8
			}
			g.Data = append(g.Data, make([]byte, g.Size-off)...)
			slots[key] = off
			fill(off)
		}
		idx := uint32(len(p.Symbols))
		p.Symbols = append(p.Symbols, patchfile.Symbol{Name: ".got+" + key, Kind: patchfile.SymPatch, Section: got, Value: off})
		return idx
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		to, ok := secIdx[int(s.Info)]
		if !ok {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, err
		}
		for off := 0; off+24 <= len(data); off += 24 {
			roff := binary.LittleEndian.Uint64(data[off:])
			info := binary.LittleEndian.Uint64(data[off+8:])
			add := int64(binary.LittleEndian.Uint64(data[off+16:]))
			typ := elf.R_X86_64(info & 0xffffffff)
			sym := symbol(int(info >> 32))
			name := p.Symbols[sym].Name
			r := patchfile.Reloc{Section: to, Offset: roff, Type: uint32(typ), Symbol: sym, Addend: add}
			switch typ {
			case elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX:
				r.Type, r.Symbol = uint32(elf.R_X86_64_PC32), slot("got:"+name, func(o uint64) {
					p.Relocs = append(p.Relocs, patchfile.Reloc{Section: got, Offset: o, Type: uint32(elf.R_X86_64_64), Symbol: sym})
				})
			case elf.R_X86_64_GOTTPOFF:
				r.Type, r.Symbol = uint32(elf.R_X86_64_PC32), slot("tpoff:"+name, func(o uint64) {
					p.Relocs = append(p.Relocs, patchfile.Reloc{Section: got, Offset: o, Type: uint32(elf.R_X86_64_TPOFF64), Symbol: sym})
				})
			case elf.R_X86_64_TLSGD:
				r.Type, r.Symbol = uint32(elf.R_X86_64_PC32), slot("gd:"+name, func(o uint64) {
					p.Relocs = append(p.Relocs,
						patchfile.Reloc{Section: got, Offset: o, Type: uint32(elf.R_X86_64_DTPMOD64), Symbol: sym},
						patchfile.Reloc{Section: got, Offset: o + 8, Type: uint32(elf.R_X86_64_DTPOFF64), Symbol: sym})
				})
			case elf.R_X86_64_TLSLD:
				r.Type, r.Symbol = uint32(elf.R_X86_64_PC32), slot("ld:", func(o uint64) {
					p.Relocs = append(p.Relocs, patchfile.Reloc{Section: got, Offset: o, Type: uint32(elf.R_X86_64_DTPMOD64), Symbol: 0})
				})
			}
			p.Relocs = append(p.Relocs, r)
		}
	}
	if p.Sections[got].Size == 0 {
		p.Sections = p.Sections[:got]
	}
	for old, repl := range spec.Replace {
		var oldSym, newSym *elf.Symbol
		for i := range tsyms {
			if tsyms[i].Name == old && elf.ST_TYPE(tsyms[i].Info) == elf.STT_FUNC {
				oldSym = &tsyms[i]
			}
		}
		for i := range osyms {
			if osyms[i].Name == repl {
				newSym = &osyms[i]
				symbol(i + 1)
			}
		}
		if oldSym == nil || newSym == nil {
			return nil, &os.PathError{Op: "find function", Path: old + " -> " + repl, Err: os.ErrNotExist}
		}
		var ni uint32
		for k, v := range symIdx {
			if osyms[k-1].Name == repl {
				ni = v
			}
		}
		p.Funcs = append(p.Funcs, patchfile.Func{Name: old, OldOffset: oldSym.Value, OldSize: oldSym.Size, NewSymbol: ni, NewSize: newSym.Size})
	}
	return p, nil
}
