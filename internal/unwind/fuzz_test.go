package unwind

import (
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfobj"
)

// FuzzTable feeds mutated call frame information to the parser, then
// computes rule rows inside every FDE and unwinds through the table with
// memory made of the same bytes: none of it may panic or loop. Seeds are
// the .eh_frame and .eh_frame_hdr of the test fixtures as gcc builds
// them, plus the committed corpus in testdata/fuzz.
func FuzzTable(f *testing.F) {
	for _, path := range []string{buildStacks(f, stackVariants["O2"]), buildStacks(f, stackVariants["O0"]), buildCXX(f)} {
		o, err := elfobj.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(o.EHFrame.Data, o.EHFrame.Addr, o.EHFrameHdr.Data, o.EHFrameHdr.Addr)
		f.Add(o.EHFrame.Data, o.EHFrame.Addr, []byte(nil), uint64(0))
	}
	f.Fuzz(func(t *testing.T, ehFrame []byte, ehAddr uint64, hdr []byte, hdrAddr uint64) {
		tab, err := NewTable(AMD64, "fuzz", Section{Addr: ehAddr, Data: ehFrame}, Section{Addr: hdrAddr, Data: hdr})
		if err != nil {
			return
		}
		_ = tab.Entries()
		var m machine
		for i := range tab.fdes {
			if i == 64 {
				break
			}
			fd := &tab.fdes[i]
			for _, pc := range []uint64{fd.pcBegin, fd.pcBegin + (fd.pcEnd-fd.pcBegin)/2, fd.pcEnd - 1} {
				_ = m.rowAt(tab, fd, pc)
			}
		}
		space := NewAddressSpace(AMD64)
		if err := space.Add(tab, 0); err != nil {
			return
		}
		mem := &Snapshot{Addr: 0x10000, Data: ehFrame}
		buf := make([]Frame, 0, 16)
		for i := range tab.fdes {
			if i == 16 {
				break
			}
			var regs Regs
			for n := 0; n < AMD64.NumRegs; n++ {
				regs.Set(n, 0x10000+uint64(8*n))
			}
			regs.Set(AMD64.PC, tab.fdes[i].pcBegin)
			frames, _ := space.Unwind(&regs, mem, buf)
			if len(frames) > cap(buf) {
				t.Fatalf("%d frames with a buffer of %d", len(frames), cap(buf))
			}
		}
		ranges := NewRanges([]CodeRange{{Start: 0x10000, End: 0x10100}})
		_ = Scan(mem, 0x10000, ranges, nil)
	})
}
