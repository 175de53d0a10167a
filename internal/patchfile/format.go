package patchfile

import (
	"errors"
	"fmt"
)

// Format constants. docs/patch-format.md is the specification; keep the two
// in step.
const (
	// Magic opens every patch file. The high first byte and the trailing
	// newline catch transfers that mangle binary files as text.
	Magic = "\x89HPATCH\n"

	// FormatMajor changes only when an older reader could misread a newer
	// file. FormatMinor grows when records are added.
	FormatMajor uint16 = 1
	FormatMinor uint16 = 0

	preambleSize     = 32
	recordHeaderSize = 16
	checksumSHA256   = 1

	// Limits that keep a hostile file from making the reader allocate
	// without bound. They are far above anything a real patch needs.
	maxString  = 1 << 20
	maxCount   = 1 << 24
	maxFileLen = 1 << 32
)

// Record tags.
const (
	tagMeta     = "META"
	tagSections = "SECT"
	tagSymbols  = "SYMS"
	tagRelocs   = "RELA"
	tagFuncs    = "FUNC"
	tagChecksum = "CSUM"
	tagSign     = "SIGN"
)

// recordCritical marks a record that a reader must understand: a reader
// that meets an unknown critical record refuses the file, one that meets an
// unknown non-critical record skips it.
const recordCritical uint16 = 1 << 0

// Sentinel errors, wrapped by the errors the reader returns.
var (
	// ErrNotPatchFile means the file does not start with Magic.
	ErrNotPatchFile = errors.New("not a hotpatch patch file")
	// ErrVersion means the file's major format version is not one this
	// reader knows.
	ErrVersion = errors.New("unsupported patch file format version")
	// ErrChecksum means the file's content does not match its checksum:
	// it is corrupt or was modified after it was written.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTruncated means the file ends before its structure does.
	ErrTruncated = errors.New("truncated")
)

// FormatError reports a malformed patch file, with the byte offset of the
// record or field at fault.
type FormatError struct {
	Offset int64
	// Record is the tag of the record being read, if any.
	Record string
	Msg    string
	Err    error
}

func (e *FormatError) Error() string {
	where := fmt.Sprintf("offset %d", e.Offset)
	if e.Record != "" {
		where += " in record " + e.Record
	}
	// The cause first, then the detail: "checksum mismatch: the file is
	// corrupt...".
	msg := e.Msg
	if e.Err != nil {
		if msg == "" {
			msg = e.Err.Error()
		} else {
			msg = e.Err.Error() + ": " + msg
		}
	}
	return "malformed patch file at " + where + ": " + msg
}

func (e *FormatError) Unwrap() error { return e.Err }
