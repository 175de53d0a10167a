package elfobj

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// systemLibc is the C library every fixture links against on Debian
// amd64; tests that need it skip, saying so, when it is elsewhere.
const systemLibc = "/lib/x86_64-linux-gnu/libc.so.6"

func buildProg(t testing.TB, pie bool) string {
	flags := []string{"-O2", "-Wl,--build-id"}
	if pie {
		flags = append(flags, "-fPIE", "-pie")
	} else {
		flags = append(flags, "-fno-PIE", "-no-pie")
	}
	return testutil.BuildFixture(t, testutil.Build{Dir: "testdata/prog", Flags: flags})
}

func buildLib(t testing.TB) string {
	mapFile, err := filepath.Abs("testdata/lib/lib.map")
	if err != nil {
		t.Fatal(err)
	}
	return testutil.BuildFixture(t, testutil.Build{
		Dir: "testdata/lib", Name: "libt.so", Shared: true,
		Flags:     []string{"-O2", "-Wl,--build-id"},
		LinkFlags: []string{"-Wl,--version-script=" + mapFile},
	})
}

func buildLibUser(t testing.TB) (exe, lib string) {
	lib = buildLib(t)
	dir := filepath.Dir(lib)
	exe = testutil.BuildFixture(t, testutil.Build{
		Dir: "testdata/libuser", Flags: []string{"-O2"},
		LinkFlags: []string{"-L" + dir, "-lt", "-Wl,-rpath," + dir},
	})
	return exe, lib
}

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	testutil.RequireTools(t, name)
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// readelfSegments parses `readelf -lW`.
func readelfSegments(t testing.TB, path string) []Segment {
	var segs []Segment
	for _, line := range strings.Split(runTool(t, "readelf", "-lW", path), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[1], "0x") {
			continue
		}
		var typ elf.ProgType
		switch f[0] {
		case "LOAD":
			typ = elf.PT_LOAD
		case "TLS":
			typ = elf.PT_TLS
		case "GNU_EH_FRAME":
			typ = elf.PT_GNU_EH_FRAME
		default:
			continue
		}
		flags := strings.Join(f[6:len(f)-1], "")
		var pf elf.ProgFlag
		if strings.Contains(flags, "R") {
			pf |= elf.PF_R
		}
		if strings.Contains(flags, "W") {
			pf |= elf.PF_W
		}
		if strings.Contains(flags, "E") {
			pf |= elf.PF_X
		}
		segs = append(segs, Segment{
			Type: typ, Flags: pf,
			Offset: mustHex(t, f[1]), Vaddr: mustHex(t, f[2]),
			Filesz: mustHex(t, f[4]), Memsz: mustHex(t, f[5]), Align: mustHex(t, f[len(f)-1]),
		})
	}
	return segs
}

type readelfSym struct {
	table string // ".dynsym" or ".symtab"
	value uint64
	size  uint64
	typ   string
	bind  string
	vis   string
	ndx   string
	name  string // with @VERSION / @@VERSION as readelf prints it
}

// readelfSymbols parses `readelf -sW --dyn-syms`, dropping the null
// entry, section and file symbols and nameless entries, as Object does.
func readelfSymbols(t testing.TB, path string) []readelfSym {
	var syms []readelfSym
	table := ""
	for _, line := range strings.Split(runTool(t, "readelf", "-sW", "--dyn-syms", path), "\n") {
		if strings.HasPrefix(line, "Symbol table '") {
			table = strings.SplitN(line, "'", 3)[1]
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasSuffix(f[0], ":") || f[0] == "Num:" {
			continue
		}
		s := readelfSym{table: table, value: mustHex(t, "0x"+f[1]), typ: f[3], bind: f[4], vis: f[5], ndx: f[6], name: f[7]}
		size, err := strconv.ParseUint(f[2], 0, 64)
		if err != nil {
			t.Fatalf("readelf symbol size %q: %v", f[2], err)
		}
		s.size = size
		if s.typ == "SECTION" || s.typ == "FILE" {
			continue
		}
		syms = append(syms, s)
	}
	return syms
}

type readelfReloc struct {
	offset uint64
	typ    uint32
	sym    string
	addend int64
}

// readelfRelocs parses the RELA sections of `readelf -rW` (the compact
// .relr.dyn table has another layout and only RELATIVE entries).
func readelfRelocs(t testing.TB, path string) []readelfReloc {
	var rels []readelfReloc
	inRela := false
	for _, line := range strings.Split(runTool(t, "readelf", "-rW", path), "\n") {
		if strings.HasPrefix(line, "Relocation section '") {
			inRela = strings.HasPrefix(strings.SplitN(line, "'", 3)[1], ".rela")
			continue
		}
		f := strings.Fields(line)
		if !inRela || len(f) < 4 || len(f[0]) != 16 {
			continue
		}
		info := mustHex(t, "0x"+f[1])
		r := readelfReloc{offset: mustHex(t, "0x"+f[0]), typ: uint32(info)}
		switch len(f) {
		case 4:
			r.addend = int64(mustHex(t, "0x"+f[3]))
		case 7:
			r.sym = f[4]
			r.addend = int64(mustHex(t, "0x"+f[6]))
			if f[5] == "-" {
				r.addend = -r.addend
			}
		default:
			t.Fatalf("unexpected readelf relocation line %q", line)
		}
		rels = append(rels, r)
	}
	return rels
}

func mustHex(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("parse hex %q: %v", s, err)
	}
	return v
}

func readMaps(t testing.TB, pid int) []proc.Mapping {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return maps
}

func readMem(t testing.TB, pid int, addr uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(addr)); err != nil {
		t.Fatalf("read %d bytes at %#x of pid %d: %v", n, addr, pid, err)
	}
	return buf
}

func readWord(t testing.TB, pid int, addr uint64) uint64 {
	return nativeOrder.Uint64(readMem(t, pid, addr, 8))
}

// reported parses "key=0x..." fields that fixtures print.
func reported(t testing.TB, out, key string) uint64 {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			// %p prints hex with 0x, %d and %zu decimal.
			n, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				t.Fatalf("parse %s=%q: %v", key, v, err)
			}
			return n
		}
	}
	t.Fatalf("fixture output has no %s=:\n%s", key, out)
	return 0
}

// biasOf computes the load bias of path in pid from all of its file
// mappings, and checks that each mapping alone, where it is unambiguous,
// gives the same.
func biasOf(t testing.TB, o *Object, pid int, path string) uint64 {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	var ms []Mapping
	for _, m := range readMaps(t, pid) {
		if m.Path == real || m.Path == path {
			ms = append(ms, Mapping{Start: m.Start, End: m.End, Offset: m.Offset, Exec: m.Perms.Exec})
		}
	}
	if len(ms) == 0 {
		t.Fatalf("%s is not mapped in pid %d", path, pid)
	}
	bias, err := o.LoadBias(ms...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		b, err := o.LoadBias(m)
		if errors.Is(err, ErrAmbiguousMapping) {
			continue
		}
		if err != nil || b != bias {
			t.Fatalf("mapping %#x-%#x offset %#x alone gives bias %#x (%v), all mappings give %#x", m.Start, m.End, m.Offset, b, err, bias)
		}
	}
	return bias
}
