package arch

import (
	"bytes"
	"errors"
	"testing"
)

// layout builds a Room from pieces: functions (not free) and padding
// (free), starting at base.
func layout(base uint64, pieces ...struct {
	code []byte
	fn   bool
}) Room {
	var b []byte
	var funcs [][2]uint64
	for _, p := range pieces {
		if p.fn {
			funcs = append(funcs, [2]uint64{base + uint64(len(b)), base + uint64(len(b)+len(p.code))})
		}
		b = append(b, p.code...)
	}
	return Room{Addr: base, Bytes: b, Free: func(a uint64) bool {
		for _, f := range funcs {
			if a >= f[0] && a < f[1] {
				return false
			}
		}
		return true
	}}
}

type piece = struct {
	code []byte
	fn   bool
}

func fn(b ...byte) piece { return piece{b, true} }
func pad(n int) piece    { return piece{bytes.Repeat([]byte{0x90}, n), false} }
func body(n int) piece   { return piece{append(bytes.Repeat([]byte{0x90}, n-1), 0xc3), true} }

func TestPlanRedirect(t *testing.T) {
	const base = 0x401000
	tiny := []byte{0x31, 0xc0, 0xc3} // xor %eax,%eax; ret
	cases := []struct {
		name  string
		room  Room
		entry uint64
		size  uint64
		site  uint64 // 0: refused
	}{
		{"long enough", layout(base, body(200)), base, 6, base},
		{"padding after", layout(base, fn(tiny...), pad(13), body(200)), base, 3, base},
		{"next at once, padding after it", layout(base, fn(tiny...), body(20), pad(12), body(200)), base, 3, base + 23},
		{"next at once, padding before", layout(base, body(150), pad(6), fn(tiny...), body(200)), base + 156, 3, base + 151},
		{"padding out of reach", layout(base, body(200), pad(16), body(200), fn(tiny...), body(200), pad(16)), base + 416, 3, 0},
		{"padding too small", layout(base, fn(tiny...), body(20), pad(4), body(200)), base, 3, 0},
		{"one byte", layout(base, fn(0xc3), body(20), pad(12), body(200)), base, 1, 0},
		// jmp .-1 style loop back to entry+1 would land inside the short jump.
		{"branch into the short jump", layout(base, fn(0x90, 0x90, 0xeb, 0xfd), body(20), pad(12), body(200)), base, 4, 0},
	}
	for _, c := range cases {
		rd, err := AMD64.PlanRedirect(c.entry, c.size, c.room)
		if c.site == 0 {
			if !errors.Is(err, ErrNoRoom) {
				t.Errorf("%s: %+v, %v; want refused", c.name, rd, err)
			}
			continue
		}
		if err != nil || rd.Site != c.site {
			t.Errorf("%s: site %#x, %v; want %#x", c.name, rd.Site, err, c.site)
			continue
		}
		if c.site == c.entry {
			if rd.Entry != nil {
				t.Errorf("%s: short jump % x where the jump fits", c.name, rd.Entry)
			}
			continue
		}
		if want, _ := AMD64.EncodeShortJump(c.entry, c.site); !bytes.Equal(rd.Entry, want) || len(rd.Entry) != 2 {
			t.Errorf("%s: entry % x, want % x", c.name, rd.Entry, want)
		}
	}
	// A trampoline already promised is not handed out twice.
	r := layout(base, fn(tiny...), body(20), pad(12), body(200))
	r.Taken = func(lo, hi uint64) bool { return lo < base+28 && base+23 < hi }
	rd, err := AMD64.PlanRedirect(base, 3, r)
	if err != nil || rd.Site < base+28 {
		t.Errorf("with the first trampoline taken: %#x, %v", rd.Site, err)
	}
}
