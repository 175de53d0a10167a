package build

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hotpatch/hotpatch/internal/elfobj"
)

// NotReproducibleError says that the original stage did not rebuild a
// deployed binary (--target) bit for bit, so a patch built from it would
// not match. Causes are the likely reasons found, most specific first.
type NotReproducibleError struct {
	Target   string
	TargetID string
	Built    string
	BuiltID  string
	Causes   []string
}

func (e *NotReproducibleError) Error() string {
	msg := fmt.Sprintf("the original stage did not reproduce %s", e.Target)
	if e.Built == "" {
		msg += fmt.Sprintf(" (build-id %s): no output of the build has its loaded contents, its name or its soname", e.TargetID)
	} else {
		msg += fmt.Sprintf(": it has build-id %s, the build made %s with %s", e.TargetID, e.Built, e.BuiltID)
	}
	if len(e.Causes) > 0 {
		msg += "; " + strings.Join(e.Causes, "; ")
	}
	return msg
}

// originalOutput is a linked output of the original stage.
type originalOutput struct {
	Path    string // where the build wrote it
	Kept    string // the copy kept in the state
	BuildID []byte
	Sources []string
	// Deployed and DeployedID are the --target this output stands for,
	// when it was given, and that binary's build-id: the one its patch is
	// keyed to. It differs from BuildID when the deployed binary carries
	// the same loaded contents under another build-id.
	Deployed   string
	DeployedID []byte
}

// checkTarget finds the original output that reproduces target, or
// explains why none does. An output reproduces it when it has the same
// build-id, or failing that when everything the loader maps from the two
// is the same: distributions strip their binaries and compute the
// build-id over debug information that stripping removes, so a faithful
// rebuild can carry another id. Outputs are matched by content, not by
// name: the target may be a symlink, or a library under its soname.
func checkTarget(target string, outputs []originalOutput, env []string) (*originalOutput, error) {
	real, err := filepath.EvalSymlinks(target)
	if err != nil {
		return nil, fmt.Errorf("--target %s: %w", target, err)
	}
	id, err := elfobj.BuildIDOfFile(real)
	if err != nil {
		return nil, fmt.Errorf("--target %s: %w; a patch is keyed to the build-id of the binary it fixes", target, err)
	}
	deployed := func(o *originalOutput) *originalOutput {
		c := *o
		c.Deployed, c.DeployedID = target, id
		return &c
	}
	for i := range outputs {
		if bytes.Equal(outputs[i].BuildID, id) {
			return deployed(&outputs[i]), nil
		}
	}
	names := map[string]bool{filepath.Base(target): true, filepath.Base(real): true}
	if so := soname(real); so != "" {
		names[so] = true
	}
	named := func(o *originalOutput) bool {
		return names[filepath.Base(o.Path)] || (soname(o.Kept) != "" && names[soname(o.Kept)])
	}
	var same []*originalOutput
	differences := map[*originalOutput][]elfobj.LoadDifference{}
	for i := range outputs {
		o := &outputs[i]
		diffs, err := elfobj.CompareLoaded(o.Kept, real)
		if err != nil {
			continue
		}
		if len(diffs) == 0 {
			same = append(same, o)
		}
		differences[o] = diffs
	}
	for _, o := range same {
		if named(o) {
			return deployed(o), nil
		}
	}
	if len(same) > 0 {
		return deployed(same[0]), nil
	}
	e := &NotReproducibleError{Target: target, TargetID: hex.EncodeToString(id)}
	var built *originalOutput
	for i := range outputs {
		if named(&outputs[i]) {
			built = &outputs[i]
		}
	}
	if built == nil {
		e.Causes = append(e.Causes, "pass the binary the build produces, or check the build command")
		return nil, e
	}
	e.Built, e.BuiltID = built.Path, hex.EncodeToString(built.BuildID)
	if diffs := differences[built]; len(diffs) > 0 {
		e.Causes = append(e.Causes, "what the loader maps differs: "+elfobj.DescribeDifferences(diffs, 4))
	}
	e.Causes = append(e.Causes, diagnose(real, built, env)...)
	return nil, e
}

func soname(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	v, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(v) == 0 {
		return ""
	}
	return v[0]
}

// diagnose compares what can be compared without the deployed build's
// logs: timestamp macros in the sources, the build directory and the
// compiler flags recorded in the debug information.
func diagnose(target string, built *originalOutput, env []string) []string {
	var causes []string
	epoch := envValue(env, "SOURCE_DATE_EPOCH")
	for _, src := range built.Sources {
		data, err := os.ReadFile(src)
		if err != nil {
			continue
		}
		for _, macro := range []string{"__DATE__", "__TIME__", "__TIMESTAMP__"} {
			if !bytes.Contains(data, []byte(macro)) {
				continue
			}
			if epoch == "" {
				causes = append(causes, fmt.Sprintf("%s uses %s, which changes with every build: set SOURCE_DATE_EPOCH to the deployed build's time in both builds (gcc honours it), or remove the macro", src, macro))
			} else {
				causes = append(causes, fmt.Sprintf("%s uses %s: check that SOURCE_DATE_EPOCH=%s is the value the deployed build used", src, macro, epoch))
			}
			break
		}
	}
	tInfo, tErr := cuInfo(target)
	bInfo, bErr := cuInfo(built.Kept)
	switch {
	case tErr != nil || bErr != nil:
		causes = append(causes, "build paths (suggest -ffile-prefix-map=OLD=NEW in both builds) or different compiler flags (the deployed binary has no debug information to compare)")
	default:
		if tInfo.compDir != bInfo.compDir {
			causes = append(causes, fmt.Sprintf("build paths: it was built in %s, this build ran in %s; build in the same directory or use -ffile-prefix-map=%s=. in both builds", tInfo.compDir, bInfo.compDir, bInfo.compDir))
		}
		if tInfo.producer != bInfo.producer {
			causes = append(causes, fmt.Sprintf("different compiler or flags: %q vs %q", tInfo.producer, bInfo.producer))
		}
	}
	if len(causes) == 0 {
		causes = append(causes, "different sources, flags, compiler or linker version; compare the two with readelf -S and readelf --debug-dump=info")
	}
	return causes
}

type cu struct{ compDir, producer string }

// cuInfo reads the build directory and producer (compiler and flags) of
// the first compilation unit that is not from the C runtime.
func cuInfo(path string) (cu, error) {
	f, err := elf.Open(path)
	if err != nil {
		return cu{}, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return cu{}, err
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			return cu{}, fmt.Errorf("no compilation unit in %s", path)
		}
		if e.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		dir, _ := e.Val(dwarf.AttrCompDir).(string)
		prod, _ := e.Val(dwarf.AttrProducer).(string)
		r.SkipChildren()
		if prod == "" || strings.HasPrefix(prod, "GNU AS") || strings.HasPrefix(name, "../sysdeps") {
			continue
		}
		return cu{compDir: dir, producer: prod}, nil
	}
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}
