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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/wrapper"
)

// NotRecompiledError is a file the diffs change that went into a
// translation unit of the original stage, where the patched stage did not
// compile that unit again and hotpatch could not do it in its place.
type NotRecompiledError struct {
	File   string
	Unit   string
	Reason string
}

func (e *NotRecompiledError) Error() string {
	if e.Unit == e.File || e.Unit == "" {
		return fmt.Sprintf("the diffs change %s but the build did not compile it again (it builds that part of the tree once) and hotpatch could not: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("the diffs change %s, which %s includes, but the build did not compile %s again and hotpatch could not: %s", e.File, e.Unit, e.Unit, e.Reason)
}

// missedUnit is a translation unit of the original stage that uses a
// changed file and that the patched stage did not compile.
type missedUnit struct {
	rec     wrapper.Record // its compile record in the original stage
	changed string         // the changed file it uses
}

// missedUnits lists the translation units that a changed file went into
// in the original stage and that the patched stage did not compile: the
// build system did not see the change (redis builds deps/ once). A unit
// uses a file when it is its source or when the file appears among the
// unit's .file directives (its headers that contribute code or types).
func missedUnits(orig, patched []wrapper.Record, changed []string) []missedUnit {
	compiled := map[string]bool{}
	for _, r := range patched {
		if r.Kind == wrapper.KindCompile {
			compiled[r.Object] = true
		}
	}
	want := map[string]bool{}
	for _, f := range changed {
		if sourceExts[filepath.Ext(f)] {
			want[f] = true
		}
	}
	last := map[string]wrapper.Record{}
	var order []string
	for _, r := range orig {
		if r.Kind != wrapper.KindCompile {
			continue
		}
		if _, ok := last[r.Object]; !ok {
			order = append(order, r.Object)
		}
		last[r.Object] = r
	}
	var out []missedUnit
	for _, obj := range order {
		r := last[obj]
		if compiled[obj] {
			continue
		}
		if want[r.Source] {
			out = append(out, missedUnit{rec: r, changed: r.Source})
			continue
		}
		for _, f := range asmFiles(r.Asm, r.Dir) {
			if want[f] {
				out = append(out, missedUnit{rec: r, changed: f})
				break
			}
		}
	}
	return out
}

// asmFiles lists the files named by the .file directives of kept
// assembly, as absolute paths: relative names are relative to the
// directory of file 0 (DWARF 5) or else to the compilation's directory.
func asmFiles(asmPath, dir string) []string {
	f, err := os.Open(asmPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	compDir := dir
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, ".file\t") && !strings.HasPrefix(line, ".file ") {
			continue
		}
		rest := strings.TrimSpace(line[len(".file"):])
		num := ""
		if i := strings.IndexAny(rest, " \t"); i > 0 && rest[0] != '"' {
			num, rest = rest[:i], strings.TrimSpace(rest[i:])
		}
		var strs []string
		for len(rest) > 0 && rest[0] == '"' {
			s, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, err := strconv.Unquote(s)
			if err != nil {
				break
			}
			strs = append(strs, v)
			rest = strings.TrimSpace(rest[len(s):])
		}
		var p string
		switch len(strs) {
		case 1:
			p = strs[0]
		case 2:
			if num == "0" && filepath.IsAbs(strs[0]) {
				compDir = strs[0]
			}
			p = filepath.Join(strs[0], strs[1])
		default:
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(compDir, p)
		}
		out = append(out, filepath.Clean(p))
	}
	return out
}

// recompileMissed compiles, in the patched stage, the translation units
// that use a changed file and that the build did not compile again, and
// relinks what contains them: the archives that hold their objects and
// the outputs linked from those. Every file it writes is saved first, in
// the replay backup, and put back with its time by restore.
func (d *driver) recompileMissed(ctx context.Context, changed []string, rb *replayBackup) ([]string, error) {
	orig, err := d.state.ReadJournal(wrapper.StageOriginal)
	if err != nil {
		return nil, err
	}
	patched, err := d.state.ReadJournal(wrapper.StagePatched)
	if err != nil {
		return nil, err
	}
	var abs []string
	for _, f := range changed {
		abs = append(abs, filepath.Join(d.src, f))
	}
	missed := missedUnits(orig, patched, abs)
	if len(missed) == 0 {
		return nil, nil
	}
	links := lastLinks(orig)
	var notes []string
	changedObjs := map[string]bool{}
	// The objects of every missed unit as the original stage left them:
	// libtool compiles a source twice (.libs/x.o and x.o), and an
	// archive member that is the other one is accounted for.
	originals := map[string][]byte{}
	for _, m := range missed {
		if !strings.Contains(m.rec.Object, "@") {
			if data, err := os.ReadFile(m.rec.Object); err == nil {
				originals[m.rec.Object] = data
			}
		}
	}
	for _, m := range missed {
		rel := d.rel(m.changed)
		fail := func(reason string) error {
			return &NotRecompiledError{File: rel, Unit: d.rel(m.rec.Source), Reason: reason}
		}
		if len(m.rec.Args) == 0 {
			return nil, fail("the original stage recorded no command for it; run the build's clean step in the build command")
		}
		var saves []string
		object, _, isLink := strings.Cut(m.rec.Object, "@")
		if isLink {
			// Compiled and linked in one command: running it again
			// relinks the output too.
			saves = append(saves, object)
		} else {
			saves = append(saves, m.rec.Object)
			if dep := depFile(m.rec.Args, m.rec.Object, m.rec.Dir); dep != "" {
				saves = append(saves, dep)
			}
		}
		var before []byte
		if !isLink {
			if before, err = os.ReadFile(m.rec.Object); err != nil {
				return nil, fail(fmt.Sprintf("its object %s is gone: %v", d.rel(m.rec.Object), err))
			}
		}
		if err := rb.save(saves...); err != nil {
			return nil, err
		}
		if err := d.runWrapper(ctx, m.rec); err != nil {
			return nil, fail(err.Error())
		}
		if isLink {
			notes = append(notes, fmt.Sprintf("the build did not compile %s again; hotpatch compiled it and linked %s", d.rel(m.rec.Source), d.rel(object)))
			continue
		}
		// Find where the object went: straight into links, or into
		// an archive the links use.
		found := false
		for _, l := range links {
			for _, in := range l.Inputs {
				if in == m.rec.Object {
					found = true
					changedObjs[in] = true
				}
			}
		}
		archives, namesakes, err := archivesHolding(links, m.rec.Object, before)
		if err != nil {
			return nil, fail(err.Error())
		}
		for _, a := range archives {
			if err := rb.save(a); err != nil {
				return nil, err
			}
			if err := replaceArchiveMember(ctx, a, m.rec.Object, d.env); err != nil {
				return nil, fail(err.Error())
			}
			changedObjs[a] = true
			found = true
		}
		// Those objects before and after they were compiled again here.
		known := map[string][]byte{}
		for obj, data := range originals {
			known[obj+"\x00before"] = data
			if now, err := os.ReadFile(obj); err == nil {
				known[obj] = now
			}
		}
		for _, a := range namesakes {
			if found || a.isOneOf(known) {
				continue
			}
			return nil, fail(fmt.Sprintf("%s holds a %s that is not the object the build compiled; rebuild the archive in the build command", d.rel(a.archive), filepath.Base(m.rec.Object)))
		}
		if !found {
			// An object only installed (a static library no link of
			// the build uses) is in no binary that runs.
			notes = append(notes, fmt.Sprintf("the build did not compile %s again; hotpatch compiled it into %s, which no executable or library of the build links", d.rel(m.rec.Source), d.rel(m.rec.Object)))
			continue
		}
		notes = append(notes, fmt.Sprintf("the build did not compile %s again; hotpatch compiled it", d.rel(m.rec.Source)))
	}
	for _, l := range links {
		uses := false
		for _, in := range l.Inputs {
			uses = uses || changedObjs[in]
		}
		if !uses {
			continue
		}
		if len(l.Args) == 0 {
			return nil, &NotRecompiledError{File: d.rel(l.Output), Reason: "the original stage recorded no link command for it"}
		}
		if err := rb.save(l.Output); err != nil {
			return nil, err
		}
		if err := d.runWrapper(ctx, l); err != nil {
			return nil, &NotRecompiledError{File: d.rel(missed[0].changed), Unit: d.rel(missed[0].rec.Source), Reason: fmt.Sprintf("relink %s: %v", d.rel(l.Output), err)}
		}
		notes = append(notes, fmt.Sprintf("hotpatch linked %s again", d.rel(l.Output)))
	}
	return notes, nil
}

func (d *driver) rel(p string) string {
	if r, err := filepath.Rel(d.src, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// lastLinks is the last link of every output of a stage, in order.
func lastLinks(recs []wrapper.Record) []wrapper.Record {
	last := map[string]int{}
	var out []wrapper.Record
	for _, r := range recs {
		if r.Kind != wrapper.KindLink {
			continue
		}
		if i, ok := last[r.Output]; ok {
			out[i] = r
			continue
		}
		last[r.Output] = len(out)
		out = append(out, r)
	}
	return out
}

// runWrapper runs a recorded compiler command again through the shims, in
// the patched stage, in the directory it ran in.
func (d *driver) runWrapper(ctx context.Context, r wrapper.Record) error {
	driver := "gcc"
	if wrapper.IsCXXName(r.Driver) {
		driver = "g++"
	}
	fmt.Fprintf(d.log, "\nhotpatch: === patched stage, run again: (cd %s && %s %s) ===\n", r.Dir, driver, strings.Join(r.Args, " "))
	cmd := exec.CommandContext(ctx, filepath.Join(d.shim, driver), r.Args...)
	cmd.Dir = r.Dir
	// Outside the build's namespace: the compilers are where they are.
	cmd.Env = append(append([]string{}, d.plainEnv...), wrapper.EnvStage+"="+string(wrapper.StagePatched))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	d.log.Write(out.Bytes())
	if err != nil {
		reason := strings.TrimSpace(out.String())
		if i := strings.LastIndexByte(reason, '\n'); i >= 0 {
			reason = reason[i+1:]
		}
		return fmt.Errorf("%s %s: %v: %s", driver, strings.Join(r.Args, " "), err, reason)
	}
	return nil
}

// depFile is the dependency file a compile-only command writes, if any:
// its -MF argument, or with -MD/-MMD the object's name with .d.
func depFile(args []string, object, dir string) string {
	md := false
	for i, a := range args {
		switch {
		case a == "-MF" && i+1 < len(args):
			p := args[i+1]
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return p
		case strings.HasPrefix(a, "-MF") && len(a) > 3:
			p := a[3:]
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return p
		case a == "-MD" || a == "-MMD":
			md = true
		}
	}
	if md {
		return strings.TrimSuffix(object, filepath.Ext(object)) + ".d"
	}
	return ""
}

// archivesHolding lists the static archives among the links' inputs that
// hold object as a member: same name, same bytes as before. namesakes are
// those that hold a member of that name with other bytes (another
// folder's object of the same name, or a stale copy).
func archivesHolding(links []wrapper.Record, object string, content []byte) (holding []string, namesakes []namesake, err error) {
	seen := map[string]bool{}
	for _, l := range links {
		for _, in := range l.Inputs {
			if filepath.Ext(in) != ".a" || seen[in] {
				continue
			}
			seen[in] = true
			members, err := readArchive(in)
			if err != nil {
				continue
			}
			named, same := 0, 0
			var other [][]byte
			for _, m := range members {
				if m.name == filepath.Base(object) {
					named++
					if bytes.Equal(m.data, content) {
						same++
					} else {
						other = append(other, m.data)
					}
				}
			}
			switch {
			case named > 1 && same > 0:
				return nil, nil, fmt.Errorf("%s holds %d members named %s; hotpatch cannot tell which to replace", in, named, filepath.Base(object))
			case same == 1:
				holding = append(holding, in)
			case named > 0:
				namesakes = append(namesakes, namesake{archive: in, data: other})
			}
		}
	}
	sort.Strings(holding)
	return holding, namesakes, nil
}

// namesake is an archive with members of an object's name but other
// bytes.
type namesake struct {
	archive string
	data    [][]byte
}

// isOneOf reports whether every such member is one of the given objects.
func (n namesake) isOneOf(objects map[string][]byte) bool {
	for _, d := range n.data {
		known := false
		for _, o := range objects {
			known = known || bytes.Equal(o, d)
		}
		if !known {
			return false
		}
	}
	return true
}

type arMember struct {
	name string
	data []byte
}

// readArchive reads the members of a System V / GNU ar archive, with the
// GNU long-name table; the symbol tables are skipped.
func readArchive(path string) ([]arMember, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("%s: not an ar archive (thin archives are not supported)", path)
	}
	pos := len(magic)
	var names []byte
	var out []arMember
	for pos+60 <= len(data) {
		h := data[pos : pos+60]
		size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 || pos+60+int(size) > len(data) {
			return nil, fmt.Errorf("%s: bad member header at offset %d", path, pos)
		}
		body := data[pos+60 : pos+60+int(size)]
		name := strings.TrimRight(string(h[0:16]), " ")
		switch {
		case name == "/" || name == "/SYM64/":
		case name == "//":
			names = body
		case strings.HasPrefix(name, "/"):
			off, err := strconv.Atoi(name[1:])
			if err != nil || off >= len(names) {
				return nil, fmt.Errorf("%s: bad long member name %q", path, name)
			}
			n := names[off:]
			if i := bytes.Index(n, []byte("/\n")); i >= 0 {
				n = n[:i]
			}
			out = append(out, arMember{name: string(n), data: body})
		default:
			out = append(out, arMember{name: strings.TrimSuffix(name, "/"), data: body})
		}
		pos += 60 + int(size)
		if pos%2 == 1 {
			pos++
		}
	}
	return out, nil
}

// replaceArchiveMember puts the new object in place of its namesake in
// the archive and rewrites the archive's symbol index.
func replaceArchiveMember(ctx context.Context, archive, object string, env []string) error {
	ar := envValue(env, "AR")
	if f := strings.Fields(ar); len(f) > 0 {
		ar = f[0]
	} else {
		ar = "ar"
	}
	cmd := exec.CommandContext(ctx, ar, "rs", archive, object)
	cmd.Dir = filepath.Dir(object)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s rs %s %s: %v: %s", ar, archive, object, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// replayBackup keeps the build's files that hotpatch itself rewrites
// while it compiles what the build missed, with their modes and times,
// so that restore puts each back exactly (make compares times). Its
// manifest lets a later run finish the job of one that was killed.
type replayBackup struct {
	dir     string
	Entries []replayEntry `json:"entries"`
}

type replayEntry struct {
	Path    string      `json:"path"`
	Existed bool        `json:"existed"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	ModTime time.Time   `json:"mtime"`
	Saved   string      `json:"saved,omitempty"`
}

func newReplayBackup(dir string) *replayBackup { return &replayBackup{dir: dir} }

// loadReplayBackup finds the manifest an interrupted run left.
func loadReplayBackup(dir string) (*replayBackup, error) {
	data, err := os.ReadFile(manifestPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rb := &replayBackup{dir: dir}
	if err := json.Unmarshal(data, rb); err != nil {
		return nil, fmt.Errorf("read %s: %w", manifestPath(dir), err)
	}
	return rb, nil
}

func (rb *replayBackup) save(paths ...string) error {
	if err := os.MkdirAll(rb.dir, 0o755); err != nil {
		return fmt.Errorf("back up build files: %w", err)
	}
outer:
	for _, p := range paths {
		for _, e := range rb.Entries {
			if e.Path == p {
				continue outer
			}
		}
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			rb.Entries = append(rb.Entries, replayEntry{Path: p})
			continue
		}
		if err != nil {
			return fmt.Errorf("back up %s: %w", p, err)
		}
		saved := filepath.Join(rb.dir, strconv.Itoa(len(rb.Entries)))
		if err := copyFile(p, saved); err != nil {
			return fmt.Errorf("back up %s: %w", p, err)
		}
		rb.Entries = append(rb.Entries, replayEntry{Path: p, Existed: true, Mode: st.Mode().Perm(), ModTime: st.ModTime(), Saved: saved})
	}
	data, err := json.Marshal(rb)
	if err != nil {
		return err
	}
	return os.WriteFile(manifestPath(rb.dir), data, 0o644)
}

// restore puts every saved file back with its mode and time, and removes
// those that did not exist.
func (rb *replayBackup) restore() error {
	var errs []error
	for _, e := range rb.Entries {
		if !e.Existed {
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		_ = os.Remove(e.Path)
		if err := copyFile(e.Saved, e.Path); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
			continue
		}
		if err := os.Chmod(e.Path, e.Mode); err != nil {
			errs = append(errs, err)
		}
		if err := os.Chtimes(e.Path, e.ModTime, e.ModTime); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore the build files hotpatch rewrote (copies kept in %s): %w", rb.dir, errors.Join(errs...))
	}
	return os.RemoveAll(rb.dir)
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}
