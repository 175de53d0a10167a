package build

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DiffError is a diff that does not apply to the tree.
type DiffError struct {
	Diff   string
	Reason string
}

func (e *DiffError) Error() string {
	return fmt.Sprintf("%s does not apply: %s", e.Diff, e.Reason)
}

// diffFiles lists the files a unified or git diff touches, relative to the
// tree it applies to with -p1: both names of every ---/+++ pair and of
// git renames and copies, so that whichever name patch(1) picks is backed
// up.
func diffFiles(diff []byte) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string, strip bool) {
		p = strings.TrimSpace(p)
		if i := strings.IndexByte(p, '\t'); i >= 0 {
			p = p[:i]
		}
		p = strings.Trim(p, `"`)
		if p == "" || p == "/dev/null" {
			return
		}
		if strip {
			i := strings.IndexByte(p, '/')
			if i < 0 {
				return
			}
			p = p[i+1:]
		}
		p = filepath.Clean(p)
		if p == "." || strings.HasPrefix(p, "..") || filepath.IsAbs(p) {
			return
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(diff))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "--- "):
			add(line[4:], true)
		case strings.HasPrefix(line, "+++ "):
			add(line[4:], true)
		case strings.HasPrefix(line, "rename from "):
			add(strings.TrimPrefix(line, "rename from "), false)
		case strings.HasPrefix(line, "rename to "):
			add(strings.TrimPrefix(line, "rename to "), false)
		case strings.HasPrefix(line, "copy to "):
			add(strings.TrimPrefix(line, "copy to "), false)
		}
	}
	return out
}

// backupEntry is one file of the source tree saved before the diffs are
// applied.
type backupEntry struct {
	Path    string      `json:"path"`
	Existed bool        `json:"existed"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	Saved   string      `json:"saved,omitempty"`
}

// backup saves the files the diffs touch, and a manifest that lets a later
// run restore them if this one is killed before it could.
type backup struct {
	root     string
	dir      string
	Entries  []backupEntry `json:"entries"`
	Restored bool          `json:"-"`
}

func manifestPath(dir string) string { return filepath.Join(dir, "manifest.json") }

func newBackup(root, dir string, files []string) (*backup, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("back up sources: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("back up sources: %w", err)
	}
	b := &backup{root: root, dir: dir}
	for i, rel := range files {
		full := filepath.Join(root, rel)
		st, err := os.Lstat(full)
		if errors.Is(err, fs.ErrNotExist) {
			b.Entries = append(b.Entries, backupEntry{Path: rel})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", rel, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("back up %s: not a regular file; diffs may only change regular files", rel)
		}
		saved := filepath.Join(dir, fmt.Sprintf("%d", i))
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", rel, err)
		}
		if err := os.WriteFile(saved, data, 0o600); err != nil {
			return nil, fmt.Errorf("back up %s: %w", rel, err)
		}
		b.Entries = append(b.Entries, backupEntry{Path: rel, Existed: true, Mode: st.Mode().Perm(), Saved: saved})
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(manifestPath(dir), data, 0o644); err != nil {
		return nil, fmt.Errorf("back up sources: %w", err)
	}
	return b, nil
}

// loadBackup finds the manifest an interrupted run left behind.
func loadBackup(root, dir string) (*backup, error) {
	data, err := os.ReadFile(manifestPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b := &backup{root: root, dir: dir}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", manifestPath(dir), err)
	}
	return b, nil
}

// restore puts every backed-up file back as it was (content and mode) and
// removes the files the diffs created. Restored files get a fresh mtime,
// newer than any object built from the patched version, so that the next
// build recompiles them.
func (b *backup) restore() error {
	var errs []error
	for _, e := range b.Entries {
		full := filepath.Join(b.root, e.Path)
		if !e.Existed {
			if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", e.Path, err))
			}
			continue
		}
		data, err := os.ReadFile(e.Saved)
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
			continue
		}
		if cur, err := os.ReadFile(full); err == nil && bytes.Equal(cur, data) {
			if st, err := os.Stat(full); err == nil && st.Mode().Perm() == e.Mode {
				continue
			}
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
			continue
		}
		// Replace rather than rewrite: patch(1) may have left a hard
		// link or a different inode behind.
		_ = os.Remove(full)
		if err := os.WriteFile(full, data, e.Mode); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
			continue
		}
		if err := os.Chmod(full, e.Mode); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore sources (backups kept in %s): %w", b.dir, errors.Join(errs...))
	}
	b.Restored = true
	return os.RemoveAll(b.dir)
}

// applyDiff applies one diff to root as patch -p1 would. patch(1) output
// goes to log; its first complaint becomes the reason of a DiffError.
func applyDiff(ctx context.Context, root, diff string, log *os.File) error {
	cmd := exec.CommandContext(ctx, "patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "--reject-file=-", "-i", diff)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	fmt.Fprintf(log, "$ patch -p1 -i %s\n%s", diff, out.String())
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("apply %s: %w (is patch(1) installed?)", diff, err)
	}
	return &DiffError{Diff: diff, Reason: patchComplaint(out.String())}
}

func patchComplaint(out string) string {
	keys := []string{"FAILED", "can't find file", "Reversed (or previously applied)", "malformed", "Only garbage", "No such file"}
	for _, line := range strings.Split(out, "\n") {
		for _, k := range keys {
			if strings.Contains(line, k) {
				return strings.TrimSpace(line)
			}
		}
	}
	if s := strings.TrimSpace(out); s != "" {
		return strings.SplitN(s, "\n", 2)[0]
	}
	return "patch(1) failed"
}
