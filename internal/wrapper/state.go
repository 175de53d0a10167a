package wrapper

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Environment variables through which "hotpatch build" tells the wrapper
// what to do. Without HOTPATCH_STAGE the wrapper is the plain compiler.
const (
	EnvStage = "HOTPATCH_STAGE"
	EnvState = "HOTPATCH_STATE"
	// EnvCC and EnvCXX name the real C and C++ compilers, possibly with
	// leading arguments ("gcc-12 -m64"), as the build would have run them.
	EnvCC  = "HOTPATCH_CC"
	EnvCXX = "HOTPATCH_CXX"
)

// Stage is the phase of a patch build the wrapper runs in.
type Stage string

const (
	// StageOriginal builds the unmodified sources and keeps each
	// translation unit's assembly and each linked output.
	StageOriginal Stage = "original"
	// StagePatched builds the patched sources, runs the differ against
	// the kept assembly and links with relocations kept.
	StagePatched Stage = "patched"
)

// Record kinds in a stage journal.
const (
	KindCompile = "compile" // a translation unit compiled through assembly
	KindLink    = "link"    // an executable, library or partial link
	KindPass    = "pass"    // handed to the real compiler unchanged
	KindFail    = "fail"    // the wrapper or the compiler failed
)

// Change is one function or variable the differ reports for a translation
// unit.
type Change struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// Record is one line of a stage journal: what one wrapper invocation did.
// The build driver reads the journal to count progress, find the linked
// outputs and explain failures.
type Record struct {
	Kind string `json:"kind"`
	Pid  int    `json:"pid"`
	Dir  string `json:"dir"`
	// Source and Object are absolute paths of a compiled translation unit.
	Source string `json:"source,omitempty"`
	Object string `json:"object,omitempty"`
	// Asm is the assembly the object was assembled from: the kept
	// original, or the differ's augmented output in the patched stage.
	Asm string `json:"asm,omitempty"`
	// Changed is set in the patched stage when the differ found changes.
	Changes []Change `json:"changes,omitempty"`
	// Output is the absolute path of a linked output; Kept is the copy of
	// it the original stage keeps; Inputs are its object inputs.
	Output string   `json:"output,omitempty"`
	Kept   string   `json:"kept,omitempty"`
	Inputs []string `json:"inputs,omitempty"`
	// Error is the one-line reason of a failure.
	Error string `json:"error,omitempty"`
	// Driver and Args are the compiler command of a compile or a link
	// as the build ran it (the name the wrapper was called by, and its
	// arguments), so that the build driver can run it again when the
	// build itself does not.
	Driver string   `json:"driver,omitempty"`
	Args   []string `json:"args,omitempty"`
}

// State is the directory where a patch build keeps what survives between
// wrapper invocations and between builds: kept assembly, copies of the
// original outputs and the journals.
type State struct{ Dir string }

func key(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:12]) + "-" + filepath.Base(path)
}

// AsmPath is where the assembly of the translation unit that produces
// object is kept for a stage.
func (s State) AsmPath(stage Stage, object string) string {
	return filepath.Join(s.Dir, "asm", string(stage), key(object)+".s")
}

// KeptOutputPath is where the original stage keeps a copy of a linked
// output.
func (s State) KeptOutputPath(output string) string {
	return filepath.Join(s.Dir, "outputs", key(output))
}

// JournalPath is the journal of a stage.
func (s State) JournalPath(stage Stage) string {
	return filepath.Join(s.Dir, "journal", string(stage)+".jsonl")
}

// TempDir is scratch space for objects of compile-and-link commands.
func (s State) TempDir() string { return filepath.Join(s.Dir, "tmp") }

// TMCloneScriptPath is the linker script fragment that places an empty
// .tm_clone_table where a plain link would have had none.
func (s State) TMCloneScriptPath() string { return filepath.Join(s.Dir, "tm_clone_table.ld") }

// tmCloneScript keeps the empty .tm_clone_table that -q preserves before
// .data, where it cannot move .bss (see docs/augmented-assembly.md and the
// build driver's sanity check).
const tmCloneScript = "SECTIONS { .tm_clone_table : { *(.tm_clone_table) } } INSERT BEFORE .data;\n"

// Append adds a record to the journal of a stage. Parallel wrappers (make
// -j) append to the same file; one write per line with O_APPEND keeps the
// lines whole.
func (s State) Append(stage Stage, r Record) error {
	p := s.JournalPath(stage)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	line = append(line, '\n')
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, werr := f.Write(line)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("journal %s: %w", p, werr)
	}
	if cerr != nil {
		return fmt.Errorf("journal %s: %w", p, cerr)
	}
	return nil
}

// ReadJournal returns the records of a stage in the order they were
// written; a missing journal has none.
func (s State) ReadJournal(stage Stage) ([]Record, error) {
	f, err := os.Open(s.JournalPath(stage))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	return decodeJournal(f, s.JournalPath(stage))
}

func decodeJournal(r io.Reader, name string) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			// A wrapper killed mid-write leaves a torn last line; the
			// records before it are still good.
			return out, fmt.Errorf("journal %s line %d: %w", name, line, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("journal %s: %w", name, err)
	}
	return out, nil
}

// CountRecords counts the lines of a stage journal cheaply, for progress.
func (s State) CountRecords(stage Stage) (compiles, total int) {
	data, err := os.ReadFile(s.JournalPath(stage))
	if err != nil {
		return 0, 0
	}
	total = bytes.Count(data, []byte{'\n'})
	compiles = bytes.Count(data, []byte(`{"kind":"compile"`))
	return compiles, total
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that a reader (or a parallel wrapper) never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// copyFileAtomic copies src to dst, keeping the mode bits.
func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
