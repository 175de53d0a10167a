package asmdiff

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestOtherFlags runs every case at flags beyond the required set, which
// bring their own constructs: function and data sections, CET (endbr64 and
// .note.gnu.property), the stack protector, mcount calls, -O3 inlining,
// no unwind tables, hot/cold partitioning with sections, -fno-plt calls
// through the GOT, local aliases. Identity must hold, and what Generate
// accepts must assemble with the original sections intact.
func TestOtherFlags(t *testing.T) {
	testutil.RequireGCC(t)
	extra := [][]string{
		{"-O2", "-ffunction-sections", "-fdata-sections"},
		{"-O2", "-fcf-protection=full", "-fstack-protector-strong"},
		{"-O2", "-pg"},
		{"-O3", "-g"},
		{"-Os"},
		{"-O1", "-fno-omit-frame-pointer"},
		{"-O2", "-fno-asynchronous-unwind-tables"},
		{"-O2", "-g", "-fno-pie", "-ffunction-sections", "-freorder-blocks-and-partition"},
		{"-O2", "-fPIC", "-fno-plt"},
		{"-O2", "-fPIC", "-fno-semantic-interposition"},
	}
	for _, c := range loadCases(t) {
		for _, fl := range extra {
			c, fl := c, fl
			t.Run(c.name+"/"+strings.Join(fl, ""), func(t *testing.T) {
				t.Parallel()
				o := asmtest.CompileFile(t, c.orig, fl)
				p := asmtest.CompileFile(t, c.patch, fl)
				for _, x := range [][]byte{o, p} {
					out, rep, err := Generate(x, x, Options{})
					if err != nil || !bytes.Equal(out, x) || len(rep.Functions)+len(rep.Variables) > 0 {
						t.Errorf("identity: %v %+v", err, rep)
					}
				}
				out, rep, err := Generate(o, p, Options{})
				if err != nil {
					if c.expect.Error == nil {
						t.Errorf("Generate: %v", err)
					}
					return
				}
				if len(rep.Functions)+len(rep.Variables) == 0 && !bytes.Equal(out, o) {
					t.Errorf("nothing reported but the output is not the original")
				}
				if !bytes.Equal(out, o) {
					checkAssembles(t, o, out)
				}
			})
		}
	}
}
