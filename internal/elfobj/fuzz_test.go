package elfobj

import (
	"bytes"
	"os"
	"testing"
)

// FuzzNew feeds mutated ELF files to the parser and to every query on
// what it returns: none may panic. The seeds are the fixtures of this
// package as gcc builds them, so mutations start from real layouts.
func FuzzNew(f *testing.F) {
	exe, lib := buildLibUser(f)
	for _, p := range []string{buildProg(f, true), buildProg(f, false), lib, exe} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := New(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		for _, s := range o.Symbols() {
			_, _ = o.Lookup(s.String())
			_, _ = o.LookupExported(s.Name)
			_ = o.GOTSlots(s.Name)
			_, _ = o.FuncAt(s.Value)
			_, _, _ = o.BoundVersion(s.Name)
		}
		_ = o.ModuleIDSlots()
		_, _ = o.ExecutableTLSOffset()
		_ = o.ExecRanges()
		_ = o.LinkBase()
		for _, l := range o.Loads {
			_, _ = o.LoadBias(Mapping{Start: 0x7f0000000000, Offset: pageDown(l.Offset)})
		}
	})
}
