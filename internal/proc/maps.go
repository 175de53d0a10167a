// Package proc reads what the kernel publishes about a process under
// /proc/PID: its memory map, threads, status and executable, and reads and
// writes its memory (process_vm_readv in bulk, /proc/PID/mem for writes,
// which also reach read-only text pages).
package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Perms are the permission bits of a mapping.
type Perms struct {
	Read, Write, Exec, Shared bool
}

func (p Perms) String() string {
	b := []byte("----")
	if p.Read {
		b[0] = 'r'
	}
	if p.Write {
		b[1] = 'w'
	}
	if p.Exec {
		b[2] = 'x'
	}
	if p.Shared {
		b[3] = 's'
	} else {
		b[3] = 'p'
	}
	return string(b)
}

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      Perms
	Offset     uint64
	// Dev is "major:minor" in hex, as the kernel prints it.
	Dev   string
	Inode uint64
	// Path is the file, a pseudo name such as "[stack]", "[vdso]" or
	// "[anon:NAME]", or empty for an anonymous mapping.
	Path string
	// Deleted is set when the kernel appended " (deleted)" to Path; Path
	// is given without it.
	Deleted bool
}

// Size is the length of the mapping in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// Contains reports whether addr is inside the mapping.
func (m Mapping) Contains(addr uint64) bool { return addr >= m.Start && addr < m.End }

// IsFile reports whether the mapping is backed by a file (inode non-zero).
func (m Mapping) IsFile() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// IsAnonymous reports whether the mapping has no file: plain anonymous
// memory or a named one ("[anon:NAME]"); heap, stack and vdso are not.
func (m Mapping) IsAnonymous() bool {
	return m.Inode == 0 && (m.Path == "" || strings.HasPrefix(m.Path, "[anon:"))
}

// AnonName returns NAME of an "[anon:NAME]" mapping.
func (m Mapping) AnonName() (string, bool) {
	if strings.HasPrefix(m.Path, "[anon:") && strings.HasSuffix(m.Path, "]") {
		return m.Path[len("[anon:") : len(m.Path)-1], true
	}
	return "", false
}

func (m Mapping) String() string {
	s := fmt.Sprintf("%x-%x %s %08x %s %d", m.Start, m.End, m.Perms, m.Offset, m.Dev, m.Inode)
	if m.Path != "" {
		s += " " + m.Path
		if m.Deleted {
			s += " (deleted)"
		}
	}
	return s
}

// FormatError reports a line of a /proc file that could not be parsed.
type FormatError struct {
	File string
	Line int
	Text string
	Msg  string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s line %d: %s: %q", e.File, e.Line, e.Msg, e.Text)
}

// ParseMaps parses the text of a /proc/PID/maps file. It never panics on
// malformed input.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var ms []Mapping
	sc := bufio.NewScanner(r)
	// Paths may be up to PATH_MAX; lines are longer than bufio's default
	// only in pathological cases, but those must not fail.
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		m, msg := parseMapsLine(line)
		if msg != "" {
			return nil, &FormatError{File: "maps", Line: n, Text: line, Msg: msg}
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return ms, nil
}

func parseMapsLine(line string) (Mapping, string) {
	var m Mapping
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f
	}
	rng := field()
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return m, "address range without '-'"
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, "bad start address"
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return m, "bad end address"
	}
	if m.End < m.Start {
		return m, "end address below start"
	}
	perms := field()
	if len(perms) != 4 {
		return m, "permissions are not 4 characters"
	}
	for i, want := range "rwx" {
		switch perms[i] {
		case byte(want):
			switch i {
			case 0:
				m.Perms.Read = true
			case 1:
				m.Perms.Write = true
			case 2:
				m.Perms.Exec = true
			}
		case '-':
		default:
			return m, "bad permission character"
		}
	}
	switch perms[3] {
	case 's':
		m.Perms.Shared = true
	case 'p':
	default:
		return m, "bad sharing flag"
	}
	if m.Offset, err = strconv.ParseUint(field(), 16, 64); err != nil {
		return m, "bad offset"
	}
	m.Dev = field()
	if !strings.Contains(m.Dev, ":") {
		return m, "bad device"
	}
	if m.Inode, err = strconv.ParseUint(field(), 10, 64); err != nil {
		return m, "bad inode"
	}
	// The path is the rest after the padding; it may contain spaces.
	m.Path = strings.TrimLeft(rest, " ")
	if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok && m.Inode != 0 {
		m.Path, m.Deleted = p, true
	}
	return m, ""
}

// ErrNoProcess means the process (or thread) does not exist, or exited.
var ErrNoProcess = errors.New("no such process")

func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

func readProcFile(pid int, name string) ([]byte, error) {
	b, err := os.ReadFile(procPath(pid, name))
	if err != nil {
		return nil, accessError(pid, fmt.Sprintf("read /proc/%d/%s", pid, name), err)
	}
	return b, nil
}

// ReadMaps reads and parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	b, err := readProcFile(pid, "maps")
	if err != nil {
		return nil, err
	}
	ms, err := ParseMaps(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse maps of pid %d: %w", pid, err)
	}
	return ms, nil
}
