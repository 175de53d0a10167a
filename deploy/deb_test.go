// Package deploy_test checks what ships hotpatch to hosts: the Debian
// package, the systemd unit, the Ansible playbook. Each test drives the
// real tool (dpkg-deb, man, systemd-analyze, ansible-playbook) on the real
// artefact.
package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(cleanRun{m}) }

// cleanRun removes the package the tests shared once they are done.
type cleanRun struct{ m *testing.M }

func (c cleanRun) Run() int {
	code := c.m.Run()
	if deb.dir != "" {
		os.RemoveAll(deb.dir)
	}
	return code
}

var deb struct {
	once sync.Once
	dir  string
	path string
	out  string
	err  error
}

// buildDeb runs scripts/package-deb once per test run: it compiles the
// whole tool, the slow part every packaging test shares.
func buildDeb(t *testing.T) string {
	t.Helper()
	testutil.RequireTools(t, "dpkg-deb", "gzip")
	deb.once.Do(func() {
		deb.dir, deb.err = os.MkdirTemp("", "hotpatch-deb-")
		if deb.err != nil {
			return
		}
		deb.path, deb.out, deb.err = packageDeb(deb.dir)
	})
	if deb.err != nil {
		t.Fatalf("scripts/package-deb: %v\n%s", deb.err, deb.out)
	}
	return deb.path
}

// packageDeb runs the script into dir and returns the path it printed.
func packageDeb(dir string, args ...string) (path, output string, err error) {
	cmd := exec.Command("../scripts/package-deb", append([]string{"-o", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], stdout.String() + stderr.String(), err
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDebianPackageMetadata(t *testing.T) {
	path := buildDeb(t)
	if filepath.Ext(path) != ".deb" || !filepath.IsAbs(path) {
		t.Fatalf("package-deb printed %q, want the absolute path of a .deb", path)
	}
	info := run(t, "dpkg-deb", "--info", path)
	for _, want := range []string{" Package: hotpatch\n", " Architecture: amd64\n", " Section: admin\n",
		"conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	version := strings.TrimSpace(run(t, "dpkg-deb", "--field", path, "Version"))
	if !regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`).MatchString(version) {
		t.Errorf("Version %q is not a valid Debian version without revision", version)
	}
	if !strings.Contains(filepath.Base(path), "_"+version+"_") {
		t.Errorf("file name %s does not carry the version %s", filepath.Base(path), version)
	}
	conffiles := run(t, "sh", "-c", "dpkg-deb --ctrl-tarfile \"$1\" | tar -xOf - ./conffiles", "sh", path)
	if strings.TrimSpace(conffiles) != "/etc/hotpatch/config" {
		t.Errorf("conffiles = %q, want /etc/hotpatch/config alone", conffiles)
	}
}

// TestDebianPackageContents checks every file the issue asks for, with the
// owner and mode a host must get.
func TestDebianPackageContents(t *testing.T) {
	path := buildDeb(t)
	contents := run(t, "dpkg-deb", "--contents", path)
	entries := map[string]string{} // path -> "mode owner"
	for _, l := range strings.Split(strings.TrimSpace(contents), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb --contents line %q", l)
		}
		entries[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
	}
	want := map[string]string{
		"/usr/bin/hotpatch":                               "-rwxr-xr-x root/root",
		"/usr/bin/hotpatch-cc":                            "lrwxrwxrwx root/root",
		"/lib/systemd/system/hotpatch.service":            "-rw-r--r-- root/root",
		"/usr/share/man/man1/hotpatch.1.gz":               "-rw-r--r-- root/root",
		"/usr/share/man/man1/hotpatch-patch.1.gz":         "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/hotpatch": "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_hotpatch":     "-rw-r--r-- root/root",
		"/etc/hotpatch/config":                            "-rw-r--r-- root/root",
		"/etc/hotpatch/trusted-keys/":                     "drwxr-xr-x root/root",
		"/var/lib/hotpatch/":                              "drwx------ root/root",
		"/var/lib/hotpatch/patches/":                      "drwx------ root/root",
	}
	for p, mode := range want {
		if got, ok := entries[p]; !ok {
			t.Errorf("the package lacks %s", p)
		} else if got != mode {
			t.Errorf("%s is %q, want %q", p, got, mode)
		}
	}
	for p := range entries {
		if strings.HasSuffix(p, ".1") {
			t.Errorf("man page %s is not compressed", p)
		}
	}
}

// TestDebianPackageExtracted unpacks the package as dpkg would place it
// and uses what it holds: the binary reports the package's version, man
// reads its pages, bash loads its completion, the unit verifies against
// the packaged binary.
func TestDebianPackageExtracted(t *testing.T) {
	path := buildDeb(t)
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", path, root)
	version := strings.TrimSpace(run(t, "dpkg-deb", "--field", path, "Version"))

	out := run(t, filepath.Join(root, "usr/bin/hotpatch"), "version")
	if !strings.HasPrefix(out, "hotpatch "+version+" ") {
		t.Errorf("the packaged binary says %q, want version %s", out, version)
	}
	cfg, err := os.ReadFile(filepath.Join(root, "etc/hotpatch/config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nrequire_signature = true\n", "\ntrusted_keys = /etc/hotpatch/trusted-keys\n"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("/etc/hotpatch/config lacks %q:\n%s", want, cfg)
		}
	}

	t.Run("man", func(t *testing.T) {
		testutil.RequireTools(t, "man")
		page := run(t, "man", "-P", "cat", "-l", filepath.Join(root, "usr/share/man/man1/hotpatch.1.gz"))
		for _, want := range []string{"HOTPATCH(1)", "Live patching of running C and C++ programs", "FILES",
			"/var/lib/hotpatch/patches", "hotpatch-patch(1)"} {
			if !strings.Contains(page, want) {
				t.Errorf("man -l hotpatch.1.gz lacks %q:\n%s", want, page)
			}
		}
		// As "man hotpatch-patch" finds it once installed: by name, in
		// the package's man folder.
		cmd := exec.Command("man", "-P", "cat", "hotpatch-patch")
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"), "MANWIDTH=80")
		b, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(b), "--retries") {
			t.Errorf("man hotpatch-patch with MANPATH at the package: %v\n%s", err, b)
		}
	})

	t.Run("bash-completion", func(t *testing.T) {
		testutil.RequireTools(t, "bash")
		script := filepath.Join(root, "usr/share/bash-completion/completions/hotpatch")
		out := run(t, "bash", "-c", `source "$1" && complete -p hotpatch`, "bash", script)
		if !strings.Contains(out, "-F __start_hotpatch hotpatch") {
			t.Errorf("the bash completion registers %q", out)
		}
		// The script asks the binary itself for candidates.
		cmd := exec.Command(filepath.Join(root, "usr/bin/hotpatch"), "__complete", "unp")
		b, err := cmd.Output()
		if err != nil || !strings.HasPrefix(string(b), "unpatch\t") {
			t.Errorf("hotpatch __complete unp: %v, %q", err, b)
		}
	})

	t.Run("systemd-analyze", func(t *testing.T) {
		verifyUnitInRoot(t, root)
	})
}

// verifyUnitInRoot runs systemd-analyze verify on the unit as installed
// under root. systemd looks there for everything the unit names: the
// packaged binary, and the targets, which come from the host's own units.
func verifyUnitInRoot(t *testing.T, root string) {
	t.Helper()
	testutil.RequireTools(t, "systemd-analyze")
	const hostUnits = "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		t.Skipf("skipped: %s has no sysinit.target, so the unit's dependencies cannot be resolved (%v)", hostUnits, err)
	}
	units := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-rn", hostUnits+"/.", units)
	// Debian 12's /lib is /usr/lib; the package installs into /lib.
	run(t, "cp", "-f", filepath.Join(root, "lib/systemd/system/hotpatch.service"), units)
	cmd := exec.Command("systemd-analyze", "verify", "--root="+root, "/usr/lib/systemd/system/hotpatch.service")
	// Documentation=man:hotpatch(1) is checked by running man.
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
	out, err := cmd.CombinedOutput()
	// verify exits 0 on unknown keys and bad values, which it only
	// prints: any output is a finding.
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify hotpatch.service: %v\n%s", err, out)
	}
}

// TestDebianPackageIsReproducible builds the package a second time and
// compares the bytes: the dates come from the commit, not the clock.
func TestDebianPackageIsReproducible(t *testing.T) {
	first := buildDeb(t)
	second, out, err := packageDeb(t.TempDir())
	if err != nil {
		t.Fatalf("second scripts/package-deb: %v\n%s", err, out)
	}
	a, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of one tree differ: %s and %s (diffoscope tells where)", first, second)
	}
}

func TestPackageDebRefusesBadInput(t *testing.T) {
	testutil.RequireTools(t, "dpkg-deb", "gzip")
	for _, args := range [][]string{{"-v", "v1.0"}, {"extra"}, {"-x"}, {"-v"}} {
		dir := t.TempDir()
		_, out, err := packageDeb(dir, args...)
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("package-deb %v: %v, want exit status 2\n%s", args, err, out)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
			t.Errorf("package-deb %v: want one line of reason, got:\n%s", args, out)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("package-deb %v left %d files in its output folder", args, len(left))
		}
	}
}
