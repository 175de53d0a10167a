package asmdiff

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
)

// FuzzGenerate drives Generate with pairs of inputs. It must never panic,
// and comparing an input with itself must give the input back with an
// empty report.
func FuzzGenerate(f *testing.F) {
	f.Add([]byte("\t.text\n\t.globl\tf\n\t.type\tf, @function\nf:\n\tret\n\t.size\tf, .-f\n"),
		[]byte("\t.text\n\t.globl\tf\n\t.type\tf, @function\nf:\n\tmovl\t$1, %eax\n\tret\n\t.size\tf, .-f\n"))
	f.Add([]byte("\t.data\nv:\t.long 1\n\t.set a,b+1\n"), []byte("\t.data\nv:\t.long 2\n"))
	f.Add([]byte(".L1:\n\t.quad .L2-.L1\n"), []byte("\t.section .rodata\n.LC0:\t.string \"x\"\n"))
	// Pairs of real compiler output, cut to a size the fuzzer mutates
	// quickly.
	if _, err := exec.LookPath("gcc"); err == nil {
		dirs, _ := filepath.Glob("testdata/cases/*")
		for _, dir := range dirs {
			origs, _ := filepath.Glob(filepath.Join(dir, "orig.c"))
			if len(origs) == 0 {
				continue
			}
			o := asmtest.CompileFile(f, origs[0], []string{"-O2"})
			p := asmtest.CompileFile(f, filepath.Join(dir, "patched.c"), []string{"-O2"})
			f.Add(cut(o), cut(p))
		}
	}
	f.Fuzz(func(t *testing.T, original, patched []byte) {
		Generate(original, patched, Options{})
		out, rep, err := Generate(original, original, Options{})
		if err != nil {
			return
		}
		if !bytes.Equal(out, original) {
			t.Fatalf("Generate(x, x) changed x")
		}
		if len(rep.Functions)+len(rep.Variables) != 0 {
			t.Fatalf("Generate(x, x) reported %+v", rep)
		}
	})
}

func cut(b []byte) []byte {
	if len(b) > 6<<10 {
		return b[:6<<10]
	}
	return b
}
