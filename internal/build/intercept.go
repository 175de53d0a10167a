package build

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hotpatch/hotpatch/internal/wrapper"
)

// intercept runs the build in a private mount namespace where the real
// compilers' own files are covered by scripts that run the wrapper. A
// configured CMake or Meson build folder, a Makefile with CC=/usr/bin/gcc
// or a compiler launcher such as ccache calls the compiler by its full
// path, past the shims on PATH; covering the file itself catches every
// such call without changing a file of the user's build folder. Nothing
// outside the build's processes sees the covered files.
type intercept struct {
	// prefix runs a command inside the namespace.
	prefix []string
	// cc and cxx replace the real compilers inside: the same files,
	// mounted where the wrapper can still run them.
	cc, cxx string
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// setupIntercept prepares the namespace for the real compilers realCC and
// realCXX (absolute paths). It returns a nil intercept and the reason
// when this machine does not allow one.
func (d *driver) setupIntercept(realCC, realCXX string) (*intercept, string, error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, "unshare(1) is not installed", nil
	}
	dir := filepath.Join(d.stateD, "intercept")
	if err := os.RemoveAll(dir); err != nil {
		return nil, "", fmt.Errorf("prepare compiler interception: %w", err)
	}
	var script strings.Builder
	script.WriteString("#!/bin/sh\n# Written by hotpatch build: runs the build with the real compilers covered by the wrapper.\nset -e\n")
	ic := &intercept{}
	covered := map[string]string{}
	for i, c := range []struct {
		path string
		cxx  bool
	}{{realCC, false}, {realCXX, true}} {
		file, err := filepath.EvalSymlinks(c.path)
		if err != nil {
			return nil, "", fmt.Errorf("compiler %s: %w", c.path, err)
		}
		moved, ok := covered[file]
		if !ok {
			// The compiler finds its own programs (cc1, collect2)
			// relative to its directory: the place it is moved to
			// mirrors the folders beside that directory.
			bin := filepath.Dir(file)
			mirror := filepath.Join(dir, "real", strconv.Itoa(i))
			if err := os.MkdirAll(filepath.Join(mirror, filepath.Base(bin)), 0o755); err != nil {
				return nil, "", err
			}
			ents, err := os.ReadDir(filepath.Dir(bin))
			if err != nil {
				return nil, "", fmt.Errorf("prepare compiler interception: %w", err)
			}
			for _, e := range ents {
				if e.Name() == filepath.Base(bin) {
					continue
				}
				if err := os.Symlink(filepath.Join(filepath.Dir(bin), e.Name()), filepath.Join(mirror, e.Name())); err != nil {
					return nil, "", fmt.Errorf("prepare compiler interception: %w", err)
				}
			}
			moved = filepath.Join(mirror, filepath.Base(bin), filepath.Base(file))
			if err := os.WriteFile(moved, nil, 0o755); err != nil {
				return nil, "", err
			}
			shim := "gcc"
			if c.cxx {
				shim = "g++"
			}
			cover := filepath.Join(dir, "cover-"+strconv.Itoa(i))
			body := "#!/bin/sh\nexec " + shellQuote(filepath.Join(d.shim, shim)) + " \"$@\"\n"
			if err := os.WriteFile(cover, []byte(body), 0o755); err != nil {
				return nil, "", err
			}
			fmt.Fprintf(&script, "mount --bind %s %s\nmount --bind %s %s\n", shellQuote(file), shellQuote(moved), shellQuote(cover), shellQuote(file))
			covered[file] = moved
		}
		if c.cxx {
			ic.cxx = moved
		} else {
			ic.cc = moved
		}
	}
	script.WriteString("exec \"$@\"\n")
	setup := filepath.Join(dir, "setup.sh")
	if err := os.WriteFile(setup, []byte(script.String()), 0o755); err != nil {
		return nil, "", err
	}
	ic.prefix = []string{unshare, "--mount", "--propagation", "private", "/bin/sh", setup}
	if os.Geteuid() != 0 {
		ic.prefix = []string{unshare, "--user", "--map-root-user", "--mount", "--propagation", "private", "/bin/sh", setup}
	}
	probe := exec.Command(ic.prefix[0], append(ic.prefix[1:], "true")...)
	var out bytes.Buffer
	probe.Stdout, probe.Stderr = &out, &out
	if err := probe.Run(); err != nil {
		return nil, fmt.Sprintf("a private mount namespace is not allowed here (%v: %s); run as root or allow unprivileged user namespaces", err, strings.TrimSpace(out.String())), nil
	}
	return ic, "", nil
}

// withIntercept is the environment of the build inside the namespace: the
// wrapper runs the moved compilers.
func (ic *intercept) env(env []string, ccArgs, cxxArgs []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == wrapper.EnvCC || k == wrapper.EnvCXX {
			continue
		}
		out = append(out, kv)
	}
	return append(out,
		wrapper.EnvCC+"="+strings.Join(append([]string{ic.cc}, ccArgs...), " "),
		wrapper.EnvCXX+"="+strings.Join(append([]string{ic.cxx}, cxxArgs...), " "))
}
