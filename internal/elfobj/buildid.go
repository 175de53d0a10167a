// Package elfobj answers questions about ELF objects on disk: their GNU
// build-id, symbols and versions, thread-local storage and call frame
// information. It wraps debug/elf and never panics on a malformed file.
package elfobj

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrNoBuildID means the object carries no NT_GNU_BUILD_ID note; patches
// cannot be keyed to it. Link with -Wl,--build-id to give it one.
var ErrNoBuildID = errors.New("no GNU build-id note (link with -Wl,--build-id)")

const ntGNUBuildID = 3

// BuildID returns the GNU build-id of an opened ELF file. It looks in the
// note sections first and falls back to PT_NOTE segments, so that it also
// works on stripped files without section headers.
func BuildID(f *elf.File) ([]byte, error) {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read note section %s: %w", s.Name, err)
		}
		if id, ok := findBuildIDNote(data, f.ByteOrder); ok {
			return id, nil
		}
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read note segment: %w", err)
		}
		if id, ok := findBuildIDNote(data, f.ByteOrder); ok {
			return id, nil
		}
	}
	return nil, ErrNoBuildID
}

// BuildIDOfFile opens path and returns its build-id.
func BuildIDOfFile(path string) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read build-id of %s: %w", path, err)
	}
	defer f.Close()
	id, err := BuildID(f)
	if err != nil {
		return nil, fmt.Errorf("read build-id of %s: %w", path, err)
	}
	return id, nil
}

// findBuildIDNote walks ELF notes (namesz, descsz, type, name, desc, each
// padded to 4 bytes) and returns the descriptor of the GNU build-id note.
func findBuildIDNote(data []byte, bo binary.ByteOrder) ([]byte, bool) {
	for len(data) >= 12 {
		namesz := uint64(bo.Uint32(data[0:]))
		descsz := uint64(bo.Uint32(data[4:]))
		typ := bo.Uint32(data[8:])
		data = data[12:]
		nameEnd := align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if nameEnd > uint64(len(data)) || descEnd > uint64(len(data)) {
			return nil, false
		}
		name := data[:namesz]
		if typ == ntGNUBuildID && bytes.Equal(bytes.TrimRight(name, "\x00"), []byte("GNU")) && descsz > 0 {
			return append([]byte(nil), data[nameEnd:nameEnd+descsz]...), true
		}
		data = data[descEnd:]
	}
	return nil, false
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }
