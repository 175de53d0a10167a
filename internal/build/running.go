package build

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// runningWarnings names the replaced functions that never return: a
// function without a return instruction (at -O2, main or a thread's start
// routine whose endless loop a changed function was inlined into) is on
// the stack of its thread for as long as the thread lives, so the patch
// would be refused at apply time. The warning names the functions gcc
// inlined into it, one of which is usually the real change, and the shape
// of a fix that can apply. It reads the kept original output: replaced
// functions keep their addresses in the patched link.
func runningWarnings(patches []Patch, outputs []originalOutput) []string {
	kept := map[string]string{}
	for _, o := range outputs {
		kept[o.Path] = o.Kept
	}
	var out []string
	for _, p := range patches {
		path := kept[p.Target]
		if path == "" {
			continue
		}
		out = append(out, neverReturning(path, p.Target, p.Functions)...)
	}
	return out
}

func neverReturning(path, name string, funcs []string) []string {
	f, err := elf.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	a, err := arch.ForMachine(f.Machine)
	if err != nil {
		return nil
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil
	}
	want := map[string]bool{}
	for _, fn := range funcs {
		want[fn] = true
	}
	var out []string
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || !want[s.Name] || s.Size == 0 {
			continue
		}
		want[s.Name] = false
		code, ok := readCode(f, s.Value, s.Size)
		if !ok || a.Returns(code) {
			continue
		}
		inlined := inlinedInto(f, s.Value)
		msg := fmt.Sprintf("%s: %s changed but never returns (it has no return instruction: an endless loop such as main or a thread's start routine), so it is always running and the patch will be refused while its thread lives", name, s.Name)
		if len(inlined) > 0 {
			msg += fmt.Sprintf("; it changed through the functions inlined into it (%s)", strings.Join(inlined, ", "))
		}
		msg += ": move the changed code into a function of its own that the loop calls, marked __attribute__((noinline)), in the deployed build too"
		out = append(out, msg)
	}
	return out
}

func readCode(f *elf.File, addr, size uint64) ([]byte, bool) {
	for _, sec := range f.Sections {
		if sec.Type == elf.SHT_PROGBITS && sec.Flags&elf.SHF_EXECINSTR != 0 && addr >= sec.Addr && addr+size <= sec.Addr+sec.Size {
			b := make([]byte, size)
			if _, err := sec.ReadAt(b, int64(addr-sec.Addr)); err != nil {
				return nil, false
			}
			return b, true
		}
	}
	return nil, false
}

// inlinedInto lists the functions DWARF says were inlined into the
// function that starts at addr.
func inlinedInto(f *elf.File, addr uint64) []string {
	d, err := f.DWARF()
	if err != nil {
		return nil
	}
	r := d.Reader()
	names := map[string]bool{}
	inside := false
	depth := 0
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == 0 {
			if inside {
				depth--
				if depth == 0 {
					break
				}
			}
			continue
		}
		if !inside {
			if e.Tag == dwarf.TagSubprogram {
				if lo, ok := e.Val(dwarf.AttrLowpc).(uint64); ok && lo == addr && e.Children {
					inside, depth = true, 1
				}
			}
			continue
		}
		if e.Tag == dwarf.TagInlinedSubroutine {
			if off, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
				if name := nameAt(d, off); name != "" {
					names[name] = true
				}
			}
		}
		if e.Children {
			depth++
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func nameAt(d *dwarf.Data, off dwarf.Offset) string {
	r := d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil || e == nil {
		return ""
	}
	if n, ok := e.Val(dwarf.AttrName).(string); ok {
		return n
	}
	if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok && o != off {
		return nameAt(d, o)
	}
	return ""
}
