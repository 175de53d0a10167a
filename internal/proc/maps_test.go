package proc

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestParseMapsGolden parses maps files captured from real processes (and
// one file of edge cases) and compares with the expected model.
func TestParseMapsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/maps/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no maps snapshots in testdata/maps: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := ParseMaps(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(ms, "", "  ")
			golden := strings.TrimSuffix(f, ".txt") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Errorf("parse of %s differs from %s:\n%s", f, golden, got)
			}
			// Printing a mapping and parsing it again gives it back.
			for _, m := range ms {
				again, err := ParseMaps(strings.NewReader(m.String()))
				if err != nil || len(again) != 1 || again[0] != m {
					t.Errorf("round trip of %q gave %+v (%v)", m.String(), again, err)
				}
			}
		})
	}
}

func TestParseMapsEdgeCases(t *testing.T) {
	in, err := os.ReadFile("testdata/maps/edge-cases.txt")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseMaps(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := ms[0].AnonName(); !ok || name != "hotpatch CVE-1 level 2" || !ms[0].IsAnonymous() {
		t.Errorf("named anonymous mapping: %q %v anon=%v", name, ok, ms[0].IsAnonymous())
	}
	if ms[2].Path != "/dev/shm/a file with  two spaces" || !ms[2].Deleted || !ms[2].Perms.Shared {
		t.Errorf("deleted shared file: %+v", ms[2])
	}
	if !ms[3].IsAnonymous() || ms[3].Path != "" {
		t.Errorf("plain anonymous mapping: %+v", ms[3])
	}
	if ms[4].IsAnonymous() {
		t.Errorf("[heap] counted as anonymous")
	}
	if ms[5].Start != 0xffffffffff600000 || !ms[5].Perms.Exec || ms[5].Perms.Read {
		t.Errorf("vsyscall: %+v", ms[5])
	}
}

func TestParseMapsRejects(t *testing.T) {
	for _, line := range []string{
		"zz-10 r--p 0 00:00 0",
		"10-5 r--p 0 00:00 0",
		"5-10 r--q 0 00:00 0",
		"5-10 rw 0 00:00 0",
		"5-10 r--p xyz 00:00 0",
		"5-10 r--p 0 0000 0",
		"5-10 r--p 0 00:00 -1",
		"5",
	} {
		_, err := ParseMaps(strings.NewReader(line + "\n"))
		var fe *FormatError
		if err == nil {
			t.Errorf("%q accepted", line)
		} else if !asFormatError(err, &fe) || fe.Line != 1 {
			t.Errorf("%q: error %v is not a FormatError for line 1", line, err)
		}
	}
}

func asFormatError(err error, fe **FormatError) bool {
	e, ok := err.(*FormatError)
	*fe = e
	return ok
}

func FuzzParseMaps(f *testing.F) {
	files, _ := filepath.Glob("testdata/maps/*.txt")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, line := range strings.Split(string(b), "\n") {
			f.Add([]byte(line))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ms, err := ParseMaps(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.End < m.Start {
				t.Fatalf("accepted end below start: %+v", m)
			}
			again, err := ParseMaps(strings.NewReader(m.String()))
			if err != nil || len(again) != 1 || again[0] != m {
				t.Fatalf("round trip of %q gave %+v (%v)", m.String(), again, err)
			}
		}
	})
}

func TestReadMapsOfSelf(t *testing.T) {
	ms, err := ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exe, err := Exe(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var sawExe, sawStack bool
	for _, m := range ms {
		sawExe = sawExe || m.Path == exe
		sawStack = sawStack || m.Path == "[stack]"
	}
	if !sawExe || !sawStack {
		t.Errorf("own maps lack the executable %s (%v) or the stack (%v)", exe, sawExe, sawStack)
	}
}

func TestParseStartTime(t *testing.T) {
	stat := "4242 (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n"
	got, err := ParseStartTime([]byte(stat))
	if err != nil || got != 987654 {
		t.Fatalf("got %d, %v; want 987654", got, err)
	}
	if _, err := ParseStartTime([]byte("1 (x) S 1")); err == nil {
		t.Fatal("a short stat line parsed")
	}
}

func TestStartTimeOfSelf(t *testing.T) {
	a, err := StartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("start time of self: %d, %v", a, err)
	}
	if _, err := StartTime(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("start time of a missing pid: %v, want ErrNoProcess", err)
	}
}

func TestPermissionErrorAdvises(t *testing.T) {
	err := accessError(1, "read /proc/1/maps", os.ErrPermission)
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_SYS_PTRACE") {
		t.Fatalf("got %v: want ErrPermission with advice", err)
	}
}

func TestParseSignalMasks(t *testing.T) {
	status := "Name:\tx\nSigQ:\t0/1000\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000400000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180004002\n"
	m, err := ParseSignalMasks([]byte(status))
	if err != nil || m.Blocked != 1<<22 || m.Ignored != 1<<12 || m.Caught != 0x180004002 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := ParseSignalMasks([]byte("Name:\tx\n")); err == nil {
		t.Fatal("a status without signal sets parsed")
	}
	if _, err := ThreadSignals(os.Getpid(), os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
