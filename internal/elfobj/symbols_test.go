package elfobj

import "testing"

func TestFuncBefore(t *testing.T) {
	for _, path := range []string{buildProg(t, true), buildLib(t)} {
		o, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, s := range o.Symbols() {
			if !s.IsFunc() || !s.Defined() || s.Size == 0 {
				continue
			}
			// Past its end, before the next function: still s, or a
			// function that starts after it.
			for _, addr := range []uint64{s.Value, s.Value + s.Size - 1, s.Value + s.Size} {
				f, ok := o.FuncBefore(addr)
				if !ok || f.Value < s.Value || f.Value > addr {
					t.Errorf("%s: FuncBefore(%#x) after %s at %#x = %s at %#x (%v)", path, addr, s.Name, s.Value, f.Name, f.Value, ok)
				}
			}
			checked++
		}
		if checked < 3 {
			t.Fatalf("%s: only %d sized functions", path, checked)
		}
		if f, ok := o.FuncBefore(0); ok {
			t.Errorf("%s: FuncBefore(0) = %s", path, f.Name)
		}
	}
}
