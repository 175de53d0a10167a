package extract

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// checkRoom warns, at build time, about a replaced function that is too
// short for the jump and has no room for one nearby (arch.PlanRedirect):
// applying the patch will be refused. The original link is the deployed
// code, so its bytes and symbols decide as the patcher will.
func (x *extractor) checkRoom(name string, addr, size uint64) {
	if size >= uint64(x.arch.JumpSize) || x.opts.Warn == nil {
		return
	}
	lo, hi := x.arch.ShortWindow(addr, size)
	var code []byte
	for _, s := range x.of.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 || addr < s.Addr || addr >= s.Addr+s.Size {
			continue
		}
		lo, hi = max(lo, s.Addr), min(hi, s.Addr+s.Size)
		data, err := s.Data()
		if err != nil {
			return
		}
		code = data[lo-s.Addr : hi-s.Addr]
	}
	if code == nil {
		return
	}
	funcs := x.originalFuncs()
	free := func(a uint64) bool {
		// Functions rarely nest; look back a little for one that
		// started earlier and still covers a.
		k := sort.Search(len(funcs), func(i int) bool { return funcs[i][0] > a }) - 1
		for ; k >= 0 && a-funcs[k][0] <= 1<<20; k-- {
			if a < funcs[k][1] {
				return false
			}
		}
		return true
	}
	if _, err := x.arch.PlanRedirect(addr, size, arch.Room{Addr: lo, Bytes: code, Free: free}); err != nil && errors.Is(err, arch.ErrNoRoom) {
		x.opts.Warn(fmt.Sprintf("%s: function %s is %v; hotpatch patch will refuse this patch: change the fix so that a caller of %s changes instead (or build with function alignment)",
			x.name, name, err, name))
	}
}

// originalFuncs are the address ranges of the original link's functions,
// sorted by start.
func (x *extractor) originalFuncs() [][2]uint64 {
	if x.ofFuncs != nil {
		return x.ofFuncs
	}
	syms, _ := x.of.Symbols()
	x.ofFuncs = [][2]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF {
			x.ofFuncs = append(x.ofFuncs, [2]uint64{s.Value, s.Value + s.Size})
		}
	}
	sort.Slice(x.ofFuncs, func(i, j int) bool { return x.ofFuncs[i][0] < x.ofFuncs[j][0] })
	// A function without a size (hand-written assembly) runs on to the
	// next one, as the patcher assumes too.
	for i := range x.ofFuncs {
		if x.ofFuncs[i][1] == x.ofFuncs[i][0] {
			x.ofFuncs[i][1] = x.ofFuncs[i][0] + 1
			for j := i + 1; j < len(x.ofFuncs); j++ {
				if x.ofFuncs[j][0] > x.ofFuncs[i][0] {
					x.ofFuncs[i][1] = x.ofFuncs[j][0]
					break
				}
			}
		}
	}
	return x.ofFuncs
}
