package patcher

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"sort"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/ptrace"
)

// The region header, at the start of every patch region in the target:
//
//	offset 0   16 bytes  magic "\x7fHOTPATCH-REGION"
//	offset 16  uint32    header format version (1)
//	offset 20  uint32    length N of the JSON document that follows
//	offset 24  uint32    CRC-32 (IEEE) of the JSON document
//	offset 28  uint32    reserved, zero
//	offset 32  N bytes   JSON (regionHeader)
//
// JSON keeps the record self-describing, so that a newer hotpatch reads
// what an older one left in a long-running process.
var regionMagic = [16]byte{0x7f, 'H', 'O', 'T', 'P', 'A', 'T', 'C', 'H', '-', 'R', 'E', 'G', 'I', 'O', 'N'}

const (
	regionHeaderVersion = 1
	regionPrefixSize    = 32
	// maxHeaderSize bounds what discovery reads from a candidate mapping.
	maxHeaderSize = 16 << 20
)

// regionHeader is what a region records about the patch it holds.
type regionHeader struct {
	ID      string `json:"id"`
	Level   uint32 `json:"level"`
	BuildID string `json:"build_id"`
	// Target is the patched object's path in the process, and Bias its
	// load bias when the patch was applied.
	Target string `json:"target"`
	Bias   uint64 `json:"load_bias"`
	Base   uint64 `json:"base"`
	Size   uint64 `json:"size"`
	// Seq orders the patches of one process: a newer patch has a higher
	// Seq. Unpatch without an id removes the highest.
	Seq       uint64 `json:"seq"`
	AppliedAt string `json:"applied_at"`
	PauseUS   int64  `json:"pause_us"`
	Tool      string `json:"tool,omitempty"`
	// Parts are the page-aligned pieces of the region and their
	// protections: header r, text r-x, rodata r, data rw-.
	Parts []regionPart `json:"parts"`
	// Text bounds the patch code, which the safety check of an unpatch
	// covers.
	TextStart uint64 `json:"text_start"`
	TextEnd   uint64 `json:"text_end"`
	// EHFrame locates the call frame information of the patch code.
	EHFrameAddr uint64 `json:"eh_frame_addr,omitempty"`
	EHFrameSize uint64 `json:"eh_frame_size,omitempty"`
	// EHRegistered says the call frame information was registered with
	// the process's unwinder (libgcc), and must be withdrawn on removal.
	EHRegistered bool `json:"eh_registered,omitempty"`
	// TrapAddr holds traps that calls injected into the process return
	// to.
	TrapAddr uint64       `json:"trap_addr"`
	Funcs    []regionFunc `json:"funcs"`
	// Incomplete marks the provisional header written in the stop that
	// maps the region, before its image: the region holds no usable code
	// and none of its jumps were written. The final header replaces it.
	Incomplete bool `json:"incomplete,omitempty"`
}

// provisional is the header a region carries from the stop that maps it
// until its image is written: everything needed to list and remove it, and
// no function table, since no jump exists yet.
func (h *regionHeader) provisional() *regionHeader {
	p := *h
	p.Funcs = nil
	p.Incomplete = true
	return &p
}

type regionPart struct {
	Name string `json:"name"`
	Off  uint64 `json:"off"`
	Size uint64 `json:"size"`
	Prot string `json:"prot"`
}

type regionFunc struct {
	Name      string `json:"name"`
	Old       uint64 `json:"old"`
	OldSize   uint64 `json:"old_size"`
	New       uint64 `json:"new"`
	NewSize   uint64 `json:"new_size"`
	RangeOnly bool   `json:"range_only,omitempty"`
	// Saved are the bytes the jump overwrote: the original code, or the
	// jump of the patch below this one.
	Saved []byte `json:"saved,omitempty"`
	// Prev is the base of the region whose jump Saved holds (stacking),
	// 0 when Saved is the original code.
	Prev uint64 `json:"prev,omitempty"`
	// Site, when set, is where the jump is written instead of Old: a
	// trampoline in padding near a function too short for the jump,
	// whose entry holds a short jump to Site. EntrySaved are the entry
	// bytes that short jump replaced, kept by the patch that wrote it
	// (the lowest of a stack).
	Site       uint64 `json:"site,omitempty"`
	EntrySaved []byte `json:"entry_saved,omitempty"`
}

// jumpAt is where f's jump is written.
func (f *regionFunc) jumpAt() uint64 {
	if f.Site != 0 {
		return f.Site
	}
	return f.Old
}

func (h *regionHeader) encode() ([]byte, error) {
	doc, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode region header: %w", err)
	}
	b := make([]byte, regionPrefixSize, regionPrefixSize+len(doc))
	copy(b, regionMagic[:])
	binary.LittleEndian.PutUint32(b[16:], regionHeaderVersion)
	binary.LittleEndian.PutUint32(b[20:], uint32(len(doc)))
	binary.LittleEndian.PutUint32(b[24:], crc32.ChecksumIEEE(doc))
	return append(b, doc...), nil
}

// errNotRegion means a mapping does not start with a region header.
var errNotRegion = fmt.Errorf("not a patch region")

// decodeRegionPrefix checks the fixed part and returns the JSON length.
func decodeRegionPrefix(b []byte) (int, error) {
	if len(b) < regionPrefixSize || !bytes.Equal(b[:16], regionMagic[:]) {
		return 0, errNotRegion
	}
	if v := binary.LittleEndian.Uint32(b[16:]); v != regionHeaderVersion {
		return 0, fmt.Errorf("region header version %d, this hotpatch reads %d: use a newer hotpatch", v, regionHeaderVersion)
	}
	n := binary.LittleEndian.Uint32(b[20:])
	if n > maxHeaderSize {
		return 0, fmt.Errorf("region header claims %d bytes", n)
	}
	return int(n), nil
}

func decodeRegionHeader(b []byte) (*regionHeader, error) {
	n, err := decodeRegionPrefix(b)
	if err != nil {
		return nil, err
	}
	if len(b) < regionPrefixSize+n {
		return nil, fmt.Errorf("region header truncated: %d of %d bytes", len(b)-regionPrefixSize, n)
	}
	doc := b[regionPrefixSize : regionPrefixSize+n]
	if crc32.ChecksumIEEE(doc) != binary.LittleEndian.Uint32(b[24:]) {
		return nil, fmt.Errorf("region header checksum mismatch")
	}
	var h regionHeader
	if err := json.Unmarshal(doc, &h); err != nil {
		return nil, fmt.Errorf("decode region header: %w", err)
	}
	return &h, nil
}

// readRegionHeader reads the header of the region at addr. A reader that does not hold the process's
// lock (info) may meet a header being rewritten (the provisional one
// replaced by the final one, or the pause time added): a torn read fails
// its CRC, and is read again.
func readRegionHeader(pid int, addr uint64) (*regionHeader, error) {
	var err error
	var n int
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Millisecond)
		}
		buf := make([]byte, regionPrefixSize)
		if err = proc.ReadMem(pid, addr, buf); err != nil {
			return nil, fmt.Errorf("read patch region header at %#x in pid %d: %w", addr, pid, err)
		}
		if n, err = decodeRegionPrefix(buf); err != nil {
			continue
		}
		buf = make([]byte, regionPrefixSize+n)
		if err = proc.ReadMem(pid, addr, buf); err != nil {
			return nil, fmt.Errorf("read patch region header at %#x in pid %d: %w", addr, pid, err)
		}
		var h *regionHeader
		if h, err = decodeRegionHeader(buf); err == nil {
			return h, nil
		}
	}
	return nil, fmt.Errorf("patch region at %#x in pid %d: %w", addr, pid, err)
}

// dropIncomplete removes the incomplete regions of the process before an
// apply plans: with the process's lock held, no other run is mapping one,
// so an incomplete region is what a run that died left, and it would
// otherwise pass for the patch it was meant to hold.
func (s *session) dropIncomplete() error {
	var keep []*Region
	s.mapped = nil
	for _, r := range s.regions {
		if r.hdr.Incomplete {
			s.mapped = append(s.mapped, [2]uint64{r.hdr.Base, r.hdr.Size})
		} else {
			keep = append(keep, r)
		}
	}
	if len(s.mapped) == 0 {
		return nil
	}
	if err := s.open(); err != nil {
		return err
	}
	for _, r := range s.regions {
		if r.hdr.Incomplete {
			s.noteRegistered(r.hdr)
		}
	}
	err := s.tr.Do(func(c *ptrace.Ctl) error { return s.unmapAll(c) })
	s.noteThreadStop()
	s.close()
	s.tr, s.mem, s.frames, s.mapped = nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("remove the incomplete patch regions an interrupted hotpatch left in pid %d: %w", s.p.Pid, err)
	}
	s.regions = keep
	return nil
}

// Region is a patch region found in a process.
type Region struct {
	hdr *regionHeader
}

// ID, Level and the rest describe the patch for info.
func (r *Region) ID() string      { return r.hdr.ID }
func (r *Region) Level() uint32   { return r.hdr.Level }
func (r *Region) BuildID() string { return r.hdr.BuildID }
func (r *Region) Target() string  { return r.hdr.Target }
func (r *Region) Base() uint64    { return r.hdr.Base }
func (r *Region) Size() uint64    { return r.hdr.Size }
func (r *Region) PauseUS() int64  { return r.hdr.PauseUS }
func (r *Region) Seq() uint64     { return r.hdr.Seq }

// Incomplete reports a region whose mapping was interrupted: it holds no
// patch code and no jump leads to it; unpatch removes it.
func (r *Region) Incomplete() bool { return r.hdr.Incomplete }
func (r *Region) AppliedAt() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r.hdr.AppliedAt)
	return t
}

// Functions lists the names of the functions the patch redirects.
func (r *Region) Functions() []string {
	var out []string
	for _, f := range r.hdr.Funcs {
		if !f.RangeOnly {
			out = append(out, f.Name)
		}
	}
	return out
}

// FindRegions scans the anonymous mappings of pid for region headers.
// Nothing but the process is consulted: this works after the tool that
// applied the patches was restarted or upgraded.
//
// Every region carries a header from the stop that mapped it on (a
// provisional one until its image is written), so a region that a killed
// hotpatch left behind is found too: the set-up code copies the header in
// itself, and where it cannot (no room for resumable code), the tracer
// writes it before the thread resumes; a tool that dies before then, in
// that case, leaves the thread in code that ends in a trap, and the
// process dies with it rather than run on with an unmarked region.
func FindRegions(pid int, maps []proc.Mapping) ([]*Region, error) {
	var cands []proc.Mapping
	for _, m := range maps {
		// A region starts with its read-only header part; a set-up
		// interrupted before its mprotects leaves it read-execute.
		if m.IsAnonymous() && m.Perms.Read && !m.Perms.Write && !m.Perms.Shared {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	ranges := make([]proc.Range, len(cands))
	for i, m := range cands {
		ranges[i] = proc.Range{Addr: m.Start, Buf: make([]byte, regionPrefixSize)}
	}
	got, err := proc.ReadRanges(pid, ranges)
	if err != nil {
		return nil, fmt.Errorf("find patch regions in pid %d: %w", pid, err)
	}
	var out []*Region
	for i, m := range cands {
		if got[i] < regionPrefixSize {
			continue
		}
		_, err := decodeRegionPrefix(ranges[i].Buf)
		if err == errNotRegion {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("patch region at %#x in pid %d: %w", m.Start, pid, err)
		}
		h, err := readRegionHeader(pid, m.Start)
		if err != nil {
			return nil, err
		}
		if h.Base != m.Start {
			return nil, fmt.Errorf("patch region at %#x in pid %d records base %#x: the header was copied or corrupted", m.Start, pid, h.Base)
		}
		out = append(out, &Region{hdr: h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].hdr.Seq < out[j].hdr.Seq })
	return out, nil
}
