package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestGendocsCoversTheCommandTree checks that every command a user can see
// gets its page, that hidden ones do not, and that the main page carries
// the verb table intact and the FILES an operator looks for.
func TestGendocsCoversTheCommandTree(t *testing.T) {
	dir := t.TempDir()
	man := filepath.Join(dir, "man1")
	bash := filepath.Join(dir, "bash", "hotpatch")
	zsh := filepath.Join(dir, "zsh", "_hotpatch")
	t.Setenv("SOURCE_DATE_EPOCH", "1798761600") // 2027-01-01, so the header date is fixed
	code, _, errOut := runCLI(t, "gendocs", "--man", man, "--bash", bash, "--zsh", zsh)
	if code != 0 {
		t.Fatalf("gendocs exited %d: %s", code, errOut)
	}

	var visible []string
	var walk func(c *cobra.Command, name string)
	walk = func(c *cobra.Command, name string) {
		for _, sub := range c.Commands() {
			n := name + "-" + sub.Name()
			if sub.IsAvailableCommand() {
				visible = append(visible, n)
				walk(sub, n)
			} else if _, err := os.Stat(filepath.Join(man, n+".1")); err == nil {
				t.Errorf("%s is hidden or help, yet has a man page", n)
			}
		}
	}
	root, _ := newRootCommand(strings.NewReader(""), os.Stdout, os.Stderr)
	walk(root, "hotpatch")
	for _, want := range append([]string{"hotpatch", "hotpatch-patch", "hotpatch-build", "hotpatch-completion-bash"}, visible...) {
		page, err := os.ReadFile(filepath.Join(man, want+".1"))
		if err != nil {
			t.Errorf("no page for %s: %v", want, err)
			continue
		}
		if !strings.HasPrefix(string(page), ".nh\n.TH \"HOTPATCH\" \"1\" \"Jan 2027\"") {
			t.Errorf("%s.1 does not start with the section 1 header dated from SOURCE_DATE_EPOCH:\n%.200s", want, page)
		}
		if strings.Contains(string(page), "Auto generated") {
			t.Errorf("%s.1 carries cobra's generated-by history section", want)
		}
	}
	if _, err := os.Stat(filepath.Join(man, "hotpatch-gendocs.1")); err == nil {
		t.Error("the hidden gendocs command got a man page")
	}

	main, err := os.ReadFile(filepath.Join(man, "hotpatch.1"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(main)
	for _, want := range []string{".SH FILES", "/etc/hotpatch/config", "/var/lib/hotpatch/patches", "/run/hotpatch.sock"} {
		if !strings.Contains(text, want) {
			t.Errorf("hotpatch.1 lacks %q", want)
		}
	}
	// The verb table of --help stays a preformatted block, one verb a line.
	_, block, _ := strings.Cut(text, ".EX\n")
	block, _, _ = strings.Cut(block, "\n.EE")
	blockLines := strings.Split(block, "\n")
	root, _ = newRootCommand(strings.NewReader(""), os.Stdout, os.Stderr)
	verbs := 0
	for _, l := range strings.Split(root.Long, "\n") {
		if strings.HasPrefix(l, "  ") {
			verbs++
			if !slices.Contains(blockLines, strings.TrimSpace(l)) {
				t.Errorf("hotpatch.1 has no line %q in its verb table:\n%s", strings.TrimSpace(l), block)
			}
		}
	}
	if verbs == 0 {
		t.Error("hotpatch --help lists no verbs; this check needs updating")
	}
	if strings.Index(text, ".SH FILES") > strings.Index(text, ".SH SEE ALSO") {
		t.Error("FILES comes after SEE ALSO in hotpatch.1")
	}

	b, err := os.ReadFile(bash)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "complete -o default -F __start_hotpatch hotpatch") {
		t.Errorf("the bash completion does not register itself for hotpatch:\n%.300s", b)
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(sh, "-n", bash).CombinedOutput(); err != nil {
			t.Errorf("bash -n rejects the completion script: %v\n%s", err, out)
		}
	}
	z, err := os.ReadFile(zsh)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(z), "#compdef hotpatch") {
		t.Errorf("the zsh completion does not start with #compdef hotpatch:\n%.200s", z)
	}
}

func TestGendocsWithoutATargetIsAUsageError(t *testing.T) {
	code, _, errOut := runCLI(t, "gendocs")
	if code != exitUsage || !strings.Contains(errOut, "give --man DIR") {
		t.Fatalf("gendocs with no flag: exit %d, %q; want exit %d and advice", code, errOut, exitUsage)
	}
}

func TestGendocsReportsAnUnwritableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "gendocs", "--man", filepath.Join(file, "man1"))
	if code != exitFailure || !strings.Contains(errOut, "create man page folder") {
		t.Fatalf("gendocs into a path under a file: exit %d, %q; want exit %d naming the folder", code, errOut, exitFailure)
	}
}
