package asmdiff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/asm/asmtest"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestPatchedProgramBehaves checks that patch code does what the patched
// source says. For every case with a driver (driver.c or driver.cc, a main
// that calls the case's functions) or with input.txt (a case that is a
// program of its own), it builds the program from the augmented assembly
// with the patch sections made allocated and the placeholders bound to the
// symbols they stand for, writes a jump over the entry of every replaced
// function in the executable file (what the patcher does in memory), runs
// it, and compares its output and exit status with those of the program
// built from the patched source, and with the original's, which must
// differ. C++ cases throw through patch code, with the re-encoded CFI and
// LSDAs registered in .eh_frame.
func TestPatchedProgramBehaves(t *testing.T) {
	testutil.RequireGCC(t)
	for _, c := range loadCases(t) {
		driver := ""
		for _, d := range []string{"driver.c", "driver.cc"} {
			if _, err := os.Stat(filepath.Join(c.dir, d)); err == nil {
				driver = filepath.Join(c.dir, d)
			}
		}
		input, _ := os.ReadFile(filepath.Join(c.dir, "input.txt"))
		if driver == "" && input == nil {
			continue
		}
		for _, fs := range c.flagSets() {
			if fs.Shared {
				continue
			}
			c, fs := c, fs
			t.Run(c.name+"/"+fs.Name, func(t *testing.T) {
				t.Parallel()
				r := runCase(t, c, fs)
				if r.err != nil {
					t.Fatal(r.err)
				}
				if len(r.rep.Functions) == 0 {
					t.Skip("skipped: no function changed at these flags")
				}
				cxx := asmtest.IsCXX(c.orig)
				var extra []string
				if driver != "" {
					extra = append(extra, asmtest.Assemble(t, asmtest.CompileFile(t, driver, fs.Flags)))
				}
				hot := linkProgram(t, cxx, fs, allocatePatch(t, r.out), extra)
				applyTable(t, hot, r.out)
				want := runProgram(t, linkProgram(t, cxx, fs, r.patch, extra), string(input))
				before := runProgram(t, linkProgram(t, cxx, fs, r.orig, extra), string(input))
				got := runProgram(t, hot, string(input))
				if got != want {
					t.Errorf("the hot-patched program answers\n%s\nthe patched source answers\n%s", got, want)
				}
				if before == want {
					t.Errorf("the driver does not tell the original from the patched program:\n%s", want)
				}
			})
		}
	}
}

var placeholderRE = regexp.MustCompile(`hotpatch\.ext\.([A-Za-z0-9_.$]+)`)

// allocatePatch turns the augmented assembly into something that runs as
// it is: patch sections allocated, placeholders replaced by the symbols
// they stand for (what extraction and the patcher resolve at apply time).
func allocatePatch(t *testing.T, out []byte) []byte {
	s := string(out)
	i := strings.Index(s, Marker)
	orig, patch := s[:i], s[i:]
	if strings.Contains(patch, "hotpatch.tpoff.") || strings.Contains(patch, "hotpatch.dtpmod.") {
		t.Fatal("TLS placeholders cannot be bound by this test")
	}
	var kept []string
	for _, line := range strings.Split(patch, "\n") {
		if strings.HasPrefix(line, "\t.weak\thotpatch.") || strings.HasPrefix(line, "\t.hidden\thotpatch.") {
			continue
		}
		kept = append(kept, line)
	}
	patch = strings.Join(kept, "\n")
	patch = placeholderRE.ReplaceAllString(patch, "$1")
	// The call frame information joins .eh_frame, where the unwinder
	// finds it; the terminator would end the section early.
	if k := strings.Index(patch, "\t.section\t.hotpatch.eh_frame"); k >= 0 {
		end := strings.Index(patch[k:], "\t.long\t0\n\t.section")
		if end < 0 {
			t.Fatal("no terminator after .hotpatch.eh_frame")
		}
		patch = patch[:k+end] + patch[k+end+len("\t.long\t0\n"):]
	}
	patch = strings.NewReplacer(
		`.section	.hotpatch.eh_frame,"",@progbits`, `.section	.eh_frame,"a",@unwind`,
		`.section	.hotpatch.gcc_except_table,"",@progbits`, `.section	.hotpatch.gcc_except_table,"a",@progbits`,
		`.section	.hotpatch.text,"x",@progbits`, `.section	.hotpatch.text,"ax",@progbits`,
		`.section	.hotpatch.rodata,"",@progbits`, `.section	.hotpatch.rodata,"a",@progbits`,
		`.section	.hotpatch.data,"w",@progbits`, `.section	.hotpatch.data,"aw",@progbits`,
		`.section	.hotpatch.bss,"w",@nobits`, `.section	.hotpatch.bss,"aw",@nobits`,
	).Replace(patch)
	return []byte(orig + patch)
}

func linkProgram(t *testing.T, cxx bool, fs asmtest.FlagSet, s []byte, objs []string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "prog.s")
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(src, s, 0o644); err != nil {
		t.Fatal(err)
	}
	driver := "gcc"
	if cxx {
		driver = "g++"
	}
	args := append(append(append([]string{}, fs.Flags...), fs.LinkFlags()...), "-o", bin, src)
	args = append(args, objs...)
	if msg, err := exec.Command(driver, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", driver, strings.Join(args, " "), err, msg)
	}
	return bin
}

// applyTable writes "jmp NEW" over the entry of every function of the
// function table (.hotpatch.funcs, read from the assembly) in the
// executable file. Range-only entries get no jump.
func applyTable(t *testing.T, bin string, out []byte) {
	t.Helper()
	f := openELF(t, bin)
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string][]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			addr[s.Name] = append(addr[s.Name], s.Value)
		}
	}
	type jump struct{ from, to uint64 }
	var jumps []jump
	for _, e := range functionTable(t, out) {
		if e.flags != 0 {
			continue
		}
		old, new := addr[e.old], addr[e.new]
		if len(old) != 1 || len(new) != 1 {
			t.Fatalf("%s: %d old and %d new definitions in the executable", e.old, len(old), len(new))
		}
		jumps = append(jumps, jump{old[0], new[0]})
	}
	if len(jumps) == 0 {
		t.Fatal("nothing to redirect")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jumps {
		off, ok := fileOffset(f, j.from)
		if !ok {
			t.Fatalf("no file offset for %#x", j.from)
		}
		data[off] = 0xe9
		binary.LittleEndian.PutUint32(data[off+1:], uint32(int32(int64(j.to)-int64(j.from+5))))
	}
	f.Close()
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// functionTable reads the entries of .hotpatch.funcs from the augmented
// assembly: four .quad lines each.
func functionTable(t *testing.T, out []byte) []tableEntry {
	t.Helper()
	s := string(out)
	i := strings.Index(s, "\t.section\t.hotpatch.funcs,")
	if i < 0 {
		return nil
	}
	var quads []string
	for _, line := range strings.Split(s[i:], "\n")[1:] {
		if strings.HasPrefix(line, "\t.section") {
			break
		}
		if strings.HasPrefix(line, "\t.quad\t") {
			quads = append(quads, strings.TrimPrefix(line, "\t.quad\t"))
		}
	}
	if len(quads)%4 != 0 {
		t.Fatalf("function table of %d words", len(quads))
	}
	var entries []tableEntry
	for k := 0; k < len(quads); k += 4 {
		entries = append(entries, tableEntry{old: quads[k], new: quads[k+1], flags: map[string]int{"0": 0, "1": 1}[quads[k+3]]})
	}
	return entries
}

func fileOffset(f *elf.File, vaddr uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && vaddr >= p.Vaddr && vaddr+5 <= p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

func runProgram(t *testing.T, bin, input string) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	// The uptime in STATS depends on the clock.
	text := regexp.MustCompile(`uptime [0-9]+`).ReplaceAllString(out.String(), "uptime N")
	return fmt.Sprintf("%sexit status %d\n", text, status)
}
