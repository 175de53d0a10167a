package unwind

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfobj"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGoldenRows renders the rule rows of captured call frame information
// (testdata/golden/NAME.cfi: the .eh_frame and .eh_frame_hdr sections of
// a g++ -O2 build of testdata/cxx, kept with objcopy --only-section) and
// compares them with NAME.rows. It needs no toolchain; run with -update
// after a deliberate change of the rendering.
func TestGoldenRows(t *testing.T) {
	for _, name := range []string{"cxx-O2"} {
		o, err := elfobj.Open("testdata/golden/" + name + ".cfi")
		if err != nil {
			t.Fatal(err)
		}
		tab, err := TableForObject(o)
		if err != nil {
			t.Fatal(err)
		}
		got := renderTable(tab)
		path := "testdata/golden/" + name + ".rows"
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("rows of %s differ from %s:\n%s", name, path, firstDiff(got, string(want)))
		}
	}
}

// renderTable writes every FDE and, at each address where the rules
// change, the CFA rule and every register rule that is not unspecified.
func renderTable(tab *Table) string {
	var b strings.Builder
	var m machine
	for i, e := range tab.Entries() {
		fmt.Fprintf(&b, "FDE %#x..%#x %q signal=%v\n", e.Start, e.End, e.Augmentation, e.Signal)
		prev := ""
		for pc := e.Start; pc < e.End; pc++ {
			if err := m.rowAt(tab, &tab.fdes[i], pc); err != nil {
				fmt.Fprintf(&b, "  %#x error %v\n", pc, err)
				break
			}
			line := "cfa=" + renderCFA(m.row.cfa)
			if m.row.cfa.isExpr {
				line += fmt.Sprintf("[%x]", tab.data[m.row.cfa.exprStart:m.row.cfa.exprEnd])
			}
			for n := 0; n < AMD64.NumRegs; n++ {
				if r := m.row.regs[n]; r.kind != ruleUnspecified {
					line += " " + readelfRegName(n) + "=" + render(tab, r, "")
				}
			}
			if line != prev {
				fmt.Fprintf(&b, "  %#x %s\n", pc, line)
				prev = line
			}
		}
	}
	return b.String()
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  got  %s\n  want %s", i+1, x, y)
		}
	}
	return ""
}
