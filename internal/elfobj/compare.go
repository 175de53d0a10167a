package elfobj

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"sort"
	"strings"
)

// LoadDifference is one place where two objects differ in what the
// loader maps: a header field, a segment, or a run of bytes of a section.
type LoadDifference struct {
	// Where is "ELF header", "program header N" or the section (or, in a
	// file without section headers, the segment) the bytes belong to.
	Where string
	// What describes a header difference; empty for byte differences.
	What string
	// For byte differences: how many bytes differ, and the first and
	// last of them, as offsets into Where and as virtual addresses.
	Bytes                   int
	FirstOffset, LastOffset uint64
	FirstAddr, LastAddr     uint64
	sectionStart, segment   uint64
}

func (d LoadDifference) String() string {
	if d.What != "" {
		return d.Where + ": " + d.What
	}
	if d.Bytes == 1 {
		return fmt.Sprintf("%s: 1 byte differs at offset %#x (address %#x)", d.Where, d.FirstOffset, d.FirstAddr)
	}
	return fmt.Sprintf("%s: %d bytes differ between offsets %#x and %#x (addresses %#x-%#x)", d.Where, d.Bytes, d.FirstOffset, d.LastOffset, d.FirstAddr, d.LastAddr)
}

// loadImage is what the loader maps from one object: its loadable
// segments as memory, and the ranges that do not matter at run time.
type loadImage struct {
	f        *elf.File
	loads    []*elf.Prog
	mem      [][]byte
	ignored  [][2]uint64 // virtual address ranges [start, end)
	sections []*elf.Section
}

// Header fields a stripped or re-linked copy may change without changing
// anything the process sees: where the section headers are and how many.
const (
	ehShoff     = 0x28
	ehShentsize = 0x3a
	ehEnd       = 0x40
)

func readImage(f *elf.File) (*loadImage, error) {
	im := &loadImage{f: f}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Memsz > 1<<32 || p.Filesz > p.Memsz {
			return nil, fmt.Errorf("segment at %#x: size %#x (file %#x) is not plausible", p.Vaddr, p.Memsz, p.Filesz)
		}
		mem := make([]byte, p.Memsz)
		if _, err := io.ReadFull(io.NewSectionReader(p, 0, int64(p.Filesz)), mem[:p.Filesz]); err != nil {
			return nil, fmt.Errorf("read segment at %#x: %w", p.Vaddr, err)
		}
		im.loads = append(im.loads, p)
		im.mem = append(im.mem, mem)
		// The ELF header is mapped with the first segment of most
		// objects; its section header fields only matter to tools.
		if p.Off == 0 && f.Class == elf.ELFCLASS64 && p.Filesz >= ehEnd {
			im.ignored = append(im.ignored, [2]uint64{p.Vaddr + ehShoff, p.Vaddr + ehShoff + 8}, [2]uint64{p.Vaddr + ehShentsize, p.Vaddr + ehEnd})
		}
	}
	if len(im.loads) == 0 {
		return nil, fmt.Errorf("no loadable segment")
	}
	// The build-id is a name for the contents, not part of them: two
	// links of the same bytes may carry different ones.
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read note segment at %#x: %w", p.Vaddr, err)
		}
		if off, n, ok := buildIDDescriptor(data, f.ByteOrder); ok {
			im.ignored = append(im.ignored, [2]uint64{p.Vaddr + off, p.Vaddr + off + n})
		}
	}
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NULL && s.Size > 0 {
			im.sections = append(im.sections, s)
		}
	}
	sort.Slice(im.sections, func(i, j int) bool { return im.sections[i].Addr < im.sections[j].Addr })
	return im, nil
}

// buildIDDescriptor finds the descriptor of the GNU build-id note in a
// run of notes: its offset and length.
func buildIDDescriptor(data []byte, bo interface{ Uint32([]byte) uint32 }) (uint64, uint64, bool) {
	var pos uint64
	for uint64(len(data)) >= pos+12 {
		namesz := uint64(bo.Uint32(data[pos:]))
		descsz := uint64(bo.Uint32(data[pos+4:]))
		typ := bo.Uint32(data[pos+8:])
		nameAt := pos + 12
		descAt := nameAt + align4(namesz)
		next := descAt + align4(descsz)
		if next > uint64(len(data)) {
			return 0, 0, false
		}
		if typ == ntGNUBuildID && bytes.Equal(bytes.TrimRight(data[nameAt:nameAt+namesz], "\x00"), []byte("GNU")) {
			return descAt, descsz, true
		}
		pos = next
	}
	return 0, 0, false
}

func (im *loadImage) isIgnored(addr uint64) bool {
	for _, r := range im.ignored {
		if addr >= r[0] && addr < r[1] {
			return true
		}
	}
	return false
}

// sectionAt names the allocated section holding addr, with its start.
func (im *loadImage) sectionAt(addr uint64) (string, uint64, bool) {
	i := sort.Search(len(im.sections), func(i int) bool { return im.sections[i].Addr+im.sections[i].Size > addr })
	if i < len(im.sections) && im.sections[i].Addr <= addr {
		return im.sections[i].Name, im.sections[i].Addr, true
	}
	return "", 0, false
}

// CompareLoaded compares what the loader maps from two ELF objects: the
// ELF header fields the loader reads, every program header (offsets in
// the file aside), and every byte of every loadable segment, which covers
// code, data, relocations and dynamic tables. It sees through what
// stripping, debuglinks and a different build-id change: section headers,
// sections that are not loaded, and the build-id note's descriptor. No
// differences means a patch built against one fits the other.
func CompareLoaded(a, b string) ([]LoadDifference, error) {
	fa, err := elf.Open(a)
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", a, err)
	}
	defer fa.Close()
	fb, err := elf.Open(b)
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", b, err)
	}
	defer fb.Close()
	diffs, err := CompareLoadedFiles(fa, fb)
	if err != nil {
		return nil, fmt.Errorf("compare %s with %s: %w", a, b, err)
	}
	return diffs, nil
}

// CompareLoadedFiles is CompareLoaded on opened files. The section names
// in differences come from a, or from b when a has no section headers.
func CompareLoadedFiles(a, b *elf.File) ([]LoadDifference, error) {
	var diffs []LoadDifference
	header := func(what string, va, vb any) {
		diffs = append(diffs, LoadDifference{Where: "ELF header", What: fmt.Sprintf("%s %v vs %v", what, va, vb)})
	}
	if a.Class != b.Class || a.Data != b.Data || a.Machine != b.Machine || a.OSABI != b.OSABI {
		header("class/data/machine/OS ABI", fmt.Sprint(a.Class, "/", a.Data, "/", a.Machine, "/", a.OSABI), fmt.Sprint(b.Class, "/", b.Data, "/", b.Machine, "/", b.OSABI))
		return diffs, nil
	}
	if a.Type != b.Type {
		header("type", a.Type, b.Type)
	}
	if a.Entry != b.Entry {
		header("entry", fmt.Sprintf("%#x", a.Entry), fmt.Sprintf("%#x", b.Entry))
	}
	if len(a.Progs) != len(b.Progs) {
		header("number of program headers", len(a.Progs), len(b.Progs))
	} else {
		for i := range a.Progs {
			pa, pb := a.Progs[i].ProgHeader, b.Progs[i].ProgHeader
			pa.Off, pb.Off = 0, 0
			if pa != pb {
				diffs = append(diffs, LoadDifference{Where: fmt.Sprintf("program header %d", i),
					What: fmt.Sprintf("%s flags %v at %#x, size %#x (file %#x) vs %s flags %v at %#x, size %#x (file %#x)",
						pa.Type, pa.Flags, pa.Vaddr, pa.Memsz, pa.Filesz, pb.Type, pb.Flags, pb.Vaddr, pb.Memsz, pb.Filesz)})
			}
		}
	}
	if len(diffs) > 0 {
		// Different layouts: comparing bytes would only list every
		// section after the first that grew; say which did.
		return append(sectionSizes(a, b), diffs...), nil
	}
	ia, err := readImage(a)
	if err != nil {
		return nil, err
	}
	ib, err := readImage(b)
	if err != nil {
		return nil, err
	}
	names := ia
	if len(ia.sections) == 0 {
		names = ib
	}
	for i := range ia.loads {
		ma, mb := ia.mem[i], ib.mem[i]
		base := ia.loads[i].Vaddr
		var cur *LoadDifference
		for off := 0; off < len(ma); off++ {
			if ma[off] == mb[off] {
				continue
			}
			addr := base + uint64(off)
			if ia.isIgnored(addr) || ib.isIgnored(addr) {
				continue
			}
			where, start, ok := names.sectionAt(addr)
			if !ok {
				where, start = fmt.Sprintf("segment %d (no section)", i), base
			}
			if cur == nil || cur.Where != where || cur.segment != uint64(i) {
				diffs = append(diffs, LoadDifference{Where: where, FirstOffset: addr - start, FirstAddr: addr, sectionStart: start, segment: uint64(i)})
				cur = &diffs[len(diffs)-1]
			}
			cur.Bytes++
			cur.LastOffset, cur.LastAddr = addr-cur.sectionStart, addr
		}
	}
	return diffs, nil
}

// sectionSizes lists the allocated sections whose size or presence
// differs between a and b, in a's address order.
func sectionSizes(a, b *elf.File) []LoadDifference {
	var out []LoadDifference
	for _, sa := range a.Sections {
		if sa.Flags&elf.SHF_ALLOC == 0 || sa.Type == elf.SHT_NULL {
			continue
		}
		sb := b.Section(sa.Name)
		switch {
		case sb == nil && len(b.Sections) > 0:
			out = append(out, LoadDifference{Where: sa.Name, What: "only in the first"})
		case sb != nil && sb.Size != sa.Size:
			out = append(out, LoadDifference{Where: sa.Name, What: fmt.Sprintf("size %#x vs %#x", sa.Size, sb.Size)})
		}
	}
	for _, sb := range b.Sections {
		if sb.Flags&elf.SHF_ALLOC != 0 && sb.Type != elf.SHT_NULL && len(a.Sections) > 0 && a.Section(sb.Name) == nil {
			out = append(out, LoadDifference{Where: sb.Name, What: "only in the second"})
		}
	}
	return out
}

// DescribeDifferences is a one-line summary of at most max differences.
func DescribeDifferences(diffs []LoadDifference, max int) string {
	var parts []string
	for i, d := range diffs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(diffs)-max))
			break
		}
		parts = append(parts, d.String())
	}
	return strings.Join(parts, "; ")
}
