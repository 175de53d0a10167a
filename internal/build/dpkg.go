package build

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// dpkgIncremental is the command that rebuilds a Debian source package
// where it stands, for a build command that is dpkg-buildpackage: the
// same options, the same environment (build flags, SOURCE_DATE_EPOCH),
// but only "debian/rules build", without the clean step that would make
// the patched stage and the restore compile the whole package again. It
// returns nil for other commands.
func dpkgIncremental(command []string) []string {
	if len(command) == 0 || filepath.Base(command[0]) != "dpkg-buildpackage" {
		return nil
	}
	out := []string{command[0]}
	args := command[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		// What to build and whether to clean: --rules-target decides.
		case a == "-b" || a == "-B" || a == "-A" || a == "-S" || a == "-F" || a == "-G" || a == "-g",
			a == "-nc" || a == "--no-pre-clean" || a == "-tc" || a == "--post-clean",
			strings.HasPrefix(a, "--build="), strings.HasPrefix(a, "--rules-target="),
			strings.HasPrefix(a, "--target=") || (strings.HasPrefix(a, "-T") && len(a) > 2):
			continue
		case a == "-T" || a == "--rules-target" || a == "--target" || a == "--build":
			i++
			continue
		}
		out = append(out, a)
	}
	return append(out, "--rules-target=build")
}

// debhelperStamp is the file dh leaves after the build sequence; while it
// is there "debian/rules build" does nothing.
const debhelperStamp = "debian/debhelper-build-stamp"

// stampKeeper takes dh's build stamp away for an incremental run and puts
// the user's back, with its time, at the end.
type stampKeeper struct {
	path    string
	saved   bool
	existed bool
	data    []byte
	mode    fs.FileMode
	mtime   time.Time
}

func (s *stampKeeper) remove() error {
	if !s.saved {
		st, err := os.Stat(s.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		default:
			data, err := os.ReadFile(s.path)
			if err != nil {
				return err
			}
			s.existed, s.data, s.mode, s.mtime = true, data, st.Mode().Perm(), st.ModTime()
		}
		s.saved = true
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *stampKeeper) putBack() error {
	if !s.saved {
		return nil
	}
	if !s.existed {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.WriteFile(s.path, s.data, s.mode); err != nil {
		return err
	}
	return os.Chtimes(s.path, s.mtime, s.mtime)
}
