package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manFiles is the FILES section of hotpatch(1). cobra's generator knows
// nothing of the paths the daemon and its unit use, and an operator reading
// "man hotpatch" on a host is looking for exactly those.
const manFiles = `.SH FILES
.TP
.B /etc/hotpatch/config
Host policy read by the daemon: lines of \fIkey\fR = \fIvalue\fR, \fB#\fR starts a comment.
Keys: \fBrequire_signature\fR = true|false, \fBtrusted_keys\fR = \fIDIR\fR.
.TP
.B /etc/hotpatch/trusted-keys
The public keys (\fIPREFIX\fR.pub from \fBhotpatch keygen\fR) whose signatures the host accepts.
.TP
.B /var/lib/hotpatch/patches
The daemon's store: every \fIBUILDID\fR.hpatch in it is applied to every process that loads the matching object.
.TP
.B /run/hotpatch.sock
The socket \fBhotpatch status\fR asks the daemon through.
`

// newGendocsCommand writes what a package ships beside the binary: one man
// page per command and the shell completions. It is hidden because only
// packagers run it, and generating from the live command tree keeps the
// pages from drifting away from the flags.
func newGendocsCommand(g *globalOptions) *cobra.Command {
	var manDir, bashFile, zshFile string
	cmd := &cobra.Command{
		Use:    "gendocs [--man DIR] [--bash FILE] [--zsh FILE]",
		Short:  "Write man pages and shell completions generated from the command tree",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if manDir == "" && bashFile == "" && zshFile == "" {
				return usageErrorf("gendocs: nothing to write; give --man DIR, --bash FILE or --zsh FILE")
			}
			root := cmd.Root()
			// The tree is built for this one run, so the changes made
			// for the pages' sake touch nothing else.
			root.DisableAutoGenTag = true
			for _, c := range allCommands(root) {
				c.Long = markdownLong(c.Long)
			}
			if manDir != "" {
				if err := writeManPages(root, manDir); err != nil {
					return err
				}
			}
			if bashFile != "" {
				if err := writeGenerated(bashFile, func(b *bytes.Buffer) error {
					return root.GenBashCompletionV2(b, true)
				}); err != nil {
					return err
				}
			}
			if zshFile != "" {
				if err := writeGenerated(zshFile, func(b *bytes.Buffer) error {
					return root.GenZshCompletion(b)
				}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write one section 1 man page per command into `DIR`")
	cmd.Flags().StringVar(&bashFile, "bash", "", "write the bash completion script to `FILE`")
	cmd.Flags().StringVar(&zshFile, "zsh", "", "write the zsh completion script to `FILE`")
	return cmd
}

func writeManPages(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create man page folder: %w", err)
	}
	// SOURCE_DATE_EPOCH, when set, fixes the date in the pages' header, so
	// two package builds of one commit are byte-identical.
	header := &doc.GenManHeader{Title: "HOTPATCH", Section: "1", Source: "hotpatch", Manual: "hotpatch manual"}
	if err := doc.GenManTreeFromOpts(root, doc.GenManTreeOptions{
		Header: header, Path: dir, CommandSeparator: "-",
	}); err != nil {
		return fmt.Errorf("write man pages into %s: %w", dir, err)
	}
	main := filepath.Join(dir, root.Name()+".1")
	page, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("read back the generated %s: %w", main, err)
	}
	text := string(page)
	if i := strings.Index(text, ".SH SEE ALSO"); i >= 0 {
		text = text[:i] + manFiles + "\n" + text[i:]
	} else {
		text += "\n" + manFiles
	}
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		return fmt.Errorf("add FILES to %s: %w", main, err)
	}
	return nil
}

func writeGenerated(path string, gen func(*bytes.Buffer) error) error {
	var b bytes.Buffer
	if err := gen(&b); err != nil {
		return fmt.Errorf("generate %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create the folder of %s: %w", path, err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// markdownLong keeps the indented lists of a --help text (the verb table of
// hotpatch itself) as they are in the man page: cobra's pages go through
// Markdown, which would run two-space-indented lines together into one
// paragraph, while four spaces make them a preformatted block.
func markdownLong(long string) string {
	lines := strings.Split(long, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "    ") {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
