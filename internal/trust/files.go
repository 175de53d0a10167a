package trust

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// CheckFile refuses a file that a user other than root or the caller could
// have written: the file itself, or the directory it is in (whoever can
// write the directory can replace the file), and the directory of the
// path's target when path is a symbolic link. f, when not nil, is the file
// already opened from path: it must be the file the path names now, so
// that a file swapped in after the check is not the one read.
func CheckFile(path string, f *os.File) error {
	var st os.FileInfo
	var err error
	if f != nil {
		st, err = f.Stat()
	} else {
		st, err = os.Stat(path)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if err := checkOwner(path, st, "file"); err != nil {
		return err
	}
	if f != nil {
		now, err := os.Stat(path)
		if err != nil || !os.SameFile(st, now) {
			return fmt.Errorf("%s: %w: the file was replaced while it was read; make sure nobody else writes it", path, ErrUnsafeFile)
		}
	}
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		dst, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check %s: %w", d, err)
		}
		if err := checkOwner(d, dst, "directory"); err != nil {
			return err
		}
	}
	return nil
}

// checkOwner refuses st when group or others may write it, or when it
// belongs to a user other than root or the caller.
func checkOwner(path string, st os.FileInfo, what string) error {
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s %s is writable by group or others (mode %04o): %w; run chmod go-w %s",
			what, path, st.Mode().Perm(), ErrUnsafeFile, path)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := int(sys.Uid); uid != 0 && uid != os.Getuid() {
		return fmt.Errorf("%s %s belongs to uid %d, neither root nor the caller (uid %d): %w; run chown root %s",
			what, path, uid, os.Getuid(), ErrUnsafeFile, path)
	}
	return nil
}

// readAll reads f to its end, bounded by the largest patch file.
func readAll(f *os.File) ([]byte, error) {
	return io.ReadAll(io.LimitReader(f, maxPatchFile+1))
}

// maxPatchFile is the largest file the patch format allows (4 GiB); a
// longer one is refused by the decoder.
const maxPatchFile = 1 << 32
