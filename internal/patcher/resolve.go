package patcher

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/elfobj"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// ErrUnresolved means a symbol the patch needs is not defined by any
// object the process has loaded.
var ErrUnresolved = errors.New("symbol not found in the process")

// resolver finds run-time addresses and TLS facts in one process.
type resolver struct {
	p      *Process
	target *Object
	// resolved maps the address of an ifunc resolver to what it returned
	// when it was called in the process.
	resolved map[uint64]uint64
}

// needResolverError asks for an ifunc's resolver to be called in the
// process: no loaded object holds a resolved slot for it.
type needResolverError struct {
	name string
	def  *Object
	addr uint64
}

func (e *needResolverError) Error() string {
	return fmt.Sprintf("%s is an indirect function (ifunc) of %s, and no loaded object holds a resolved slot for it", e.name, e.def.Path)
}

func versioned(s *patchfile.Symbol) string {
	if s.Version != "" {
		return s.Name + "@" + s.Version
	}
	return s.Name
}

// readWord reads a pointer-sized slot of the live process.
func (r *resolver) readWord(addr uint64) (uint64, error) {
	var b [8]byte
	if err := proc.ReadMem(r.p.MemPid, addr, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// external finds the definition of an external symbol in load order,
// executable first, as the dynamic linker does, so a copy-relocated
// variable (stdout) resolves to the executable's copy.
func (r *resolver) external(s *patchfile.Symbol, wantTLS bool) (*Object, elfobj.Symbol, error) {
	name := versioned(s)
	for _, o := range r.p.Objects {
		sym, err := o.File.LookupExported(name)
		if err != nil {
			continue
		}
		if sym.IsTLS() != wantTLS {
			continue
		}
		return o, sym, nil
	}
	return nil, elfobj.Symbol{}, fmt.Errorf("%s: %w (pid %d; is the library that defines it loaded?)", name, ErrUnresolved, r.p.Pid)
}

// address resolves an external non-TLS symbol to its run-time address.
func (r *resolver) address(s *patchfile.Symbol) (uint64, error) {
	o, sym, err := r.external(s, false)
	if err != nil {
		return 0, err
	}
	if !sym.IsIFunc() {
		return o.Bias + sym.Value, nil
	}
	return r.ifunc(s, o, o.Bias+sym.Value)
}

// targetIFunc reports whether a symbol of the target object is an ifunc,
// by its type in the patch or in the object's own symbol tables.
func (r *resolver) targetIFunc(s *patchfile.Symbol) bool {
	if s.Type == elf.STT_GNU_IFUNC {
		return true
	}
	if s.Name == "" {
		return false
	}
	for _, sym := range r.target.File.SymbolsNamed(s.Name) {
		if sym.IsIFunc() && sym.Defined() && sym.Value == s.Value {
			return true
		}
	}
	return false
}

// ifunc returns the implementation an indirect function was resolved to,
// read from a slot some loaded object holds for it: the target object's
// first, then the others. A lazy PLT slot not yet bound points at a PLT
// entry, which is as good a call target. Without a slot, the resolver at
// resolverAddr must be called in the process (callResolver), and its
// result is used.
func (r *resolver) ifunc(s *patchfile.Symbol, def *Object, resolverAddr uint64) (uint64, error) {
	objs := append([]*Object{r.target}, r.p.Objects...)
	for _, o := range objs {
		for _, slot := range o.File.GOTSlots(s.Name) {
			switch slot.Kind {
			case elfobj.SlotGlobDat, elfobj.SlotJumpSlot, elfobj.SlotAbsolute:
			case elfobj.SlotIRelative:
				if o != def {
					continue
				}
			default:
				continue
			}
			v, err := r.readWord(o.Bias + slot.Offset)
			if err != nil {
				return 0, fmt.Errorf("read the slot of ifunc %s in %s: %w", s.Name, o.Path, err)
			}
			if slot.Kind == elfobj.SlotAbsolute {
				v -= uint64(slot.Addend)
			}
			if v != 0 {
				return v, nil
			}
		}
	}
	if v, ok := r.resolved[resolverAddr]; ok {
		return v, nil
	}
	return 0, &needResolverError{name: s.Name, def: def, addr: resolverAddr}
}

// tlsObject returns the object defining a TLS symbol and the symbol's
// offset in that object's TLS block.
func (r *resolver) tlsObject(s *patchfile.Symbol) (*Object, uint64, error) {
	switch s.Kind {
	case patchfile.SymTLS:
		return r.target, s.Value, nil
	case patchfile.SymNull:
		return r.target, 0, nil
	case patchfile.SymExternalTLS:
		o, sym, err := r.external(s, true)
		if err != nil {
			return nil, 0, err
		}
		return o, sym.Value, nil
	}
	return nil, 0, fmt.Errorf("symbol %s (%v) is not thread-local", s.Name, s.Kind)
}

// tpoff is the offset from the thread pointer of offset off in o's TLS
// block. The executable's block is placed by a fixed rule; a library's
// offset is read from one of its own initial-exec slots in the process.
func (r *resolver) tpoff(o *Object, off uint64, name string) (uint64, error) {
	if o.Main {
		base, err := o.File.ExecutableTLSOffset()
		if err != nil {
			return 0, fmt.Errorf("TLS variable %s: %w", name, err)
		}
		return uint64(base) + off, nil
	}
	for _, slot := range o.File.DynRelocs() {
		if slot.Kind != elfobj.SlotTPOff || slot.Symbol.Name != "" && !slot.Symbol.Defined() {
			continue
		}
		v, err := r.readWord(o.Bias + slot.Offset)
		if err != nil {
			return 0, fmt.Errorf("read a TLS offset slot of %s: %w", o.Path, err)
		}
		// The slot holds blockOffset + symbol value + addend.
		block := v - slot.Symbol.Value - uint64(slot.Addend)
		return block + off, nil
	}
	return 0, fmt.Errorf("TLS variable %s of %s: the library has no initial-exec TLS slot from which to learn where its block is; "+
		"build the patch with general-dynamic access (-ftls-model=global-dynamic) for it", name, o.Path)
}

// moduleID is the TLS module id of o: 1 for the executable, read from one
// of the library's own DTPMOD slots otherwise.
func (r *resolver) moduleID(o *Object, name string) (uint64, error) {
	if o.Main {
		return 1, nil
	}
	for _, slot := range o.File.ModuleIDSlots() {
		v, err := r.readWord(o.Bias + slot.Offset)
		if err != nil {
			return 0, fmt.Errorf("read a TLS module slot of %s: %w", o.Path, err)
		}
		if v != 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("TLS variable %s of %s: the library has no module-id slot from which to learn its TLS module", name, o.Path)
}
