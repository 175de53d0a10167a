package elfobj

import (
	"debug/elf"
	"errors"
	"fmt"
)

// ErrNoTLS means the object has no PT_TLS segment.
var ErrNoTLS = errors.New("object has no thread-local storage (no PT_TLS segment)")

// ExecutableTLSOffset returns where an executable's TLS block lies
// relative to the thread pointer: the variable with st_value v is at
// tp + offset + v in every thread. The executable is always TLS module 1
// and its block is placed by a fixed rule that the static linker (for
// local-exec code) and the dynamic linker agree on, so no process needs to
// be read. Shared libraries get their offset at load time; read one of
// their TPOFF slots instead (GOTSlots).
func (o *Object) ExecutableTLSOffset() (int64, error) {
	if o.TLS == nil {
		return 0, fmt.Errorf("TLS offset of %s: %w", o.Path, ErrNoTLS)
	}
	if o.Type != elf.ET_EXEC && !o.isPIE() {
		return 0, fmt.Errorf("TLS offset of %s: not an executable; a shared library's TLS offset is chosen at load time", o.Path)
	}
	align := o.TLS.Align
	if align == 0 {
		align = 1
	}
	switch o.Machine {
	case elf.EM_X86_64:
		// TLS variant II, as glibc's _dl_determine_tlsoffset places
		// module 1: the block ends at the thread pointer, rounded so that
		// its first byte keeps the alignment p_vaddr had in the file.
		firstbyte := -(o.TLS.Vaddr & (align - 1)) & (align - 1)
		off := alignUp(o.TLS.Memsz-firstbyte, align) + firstbyte
		return -int64(off), nil
	}
	return 0, fmt.Errorf("TLS offset of %s: machine %v is not supported yet", o.Path, o.Machine)
}

// isPIE tells a position-independent executable from a shared library:
// both are ET_DYN, but only an executable asks for a program interpreter
// or says DF_1_PIE.
func (o *Object) isPIE() bool { return o.Type == elf.ET_DYN && o.pie }

func alignUp(v, align uint64) uint64 { return (v + align - 1) &^ (align - 1) }
