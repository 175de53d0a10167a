package proc

import (
	"encoding/binary"
	"os"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	// A command name with spaces and a parenthesis, as the kernel prints it.
	stat := "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	id, err := ParseIdentity([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if id.PPid != 17 || id.StartTime != 98765 {
		t.Errorf("identity %+v, want ppid 17 and start time 98765", id)
	}
	if _, err := ParseIdentity([]byte("42 (short) S 1 2")); err == nil {
		t.Error("a truncated stat parsed")
	}
}

func TestIdentityOfSelf(t *testing.T) {
	id, err := ReadIdentity(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if id.PPid != os.Getppid() || id.StartTime == 0 {
		t.Errorf("own identity %+v, parent %d", id, os.Getppid())
	}
}

func TestParseAuxv(t *testing.T) {
	b := make([]byte, 48)
	binary.LittleEndian.PutUint64(b[0:], AtEntry)
	binary.LittleEndian.PutUint64(b[8:], 0x401000)
	binary.LittleEndian.PutUint64(b[16:], 6) // AT_PAGESZ
	binary.LittleEndian.PutUint64(b[24:], 4096)
	a, err := ParseAuxv(b)
	if err != nil {
		t.Fatal(err)
	}
	if a[AtEntry] != 0x401000 || a[6] != 4096 {
		t.Errorf("auxv %v", a)
	}
	if _, err := ParseAuxv(b[:32]); err == nil {
		t.Error("an auxiliary vector without AT_NULL parsed")
	}
	own, err := Auxv(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if own[AtEntry] == 0 {
		t.Error("no AT_ENTRY in this process's auxiliary vector")
	}
}
