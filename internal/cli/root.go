// Package cli is the hotpatch command tree. It is the only layer that prints
// or logs: the libraries below it return wrapped errors, and this package
// turns them into one line on stderr and an exit status.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses. Usage and "not implemented yet" share status 2 so that
// scripts can tell them from an operation that was tried and failed.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries a specific exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// compilerNames are the names under which the binary acts as the compiler
// wrapper directly, without the "cc" verb: the shim directory that
// "hotpatch build" puts first on PATH links them to this binary.
var compilerNames = map[string]bool{
	"hotpatch-cc": true, "cc": true, "gcc": true, "g++": true, "c++": true,
}

// Main runs the command line and returns the process exit status.
func Main(args []string) int {
	return run(args, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(args[0])
	if compilerNames[name] {
		return runCompilerWrapper(name, args[1:], stdin, stdout, stderr)
	}
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args[1:])
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "hotpatch: %s\n", oneLine(err.Error()))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		return exitUsage
	}
	return exitFailure
}

// oneLine keeps the promise of a one-line reason even when a lower layer
// wrapped a multi-line message (a compiler's stderr, say).
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " (more in the log above)"
	}
	return s
}

// isUsageError recognises the flag and argument errors that cobra and pflag
// produce, which have no type of their own.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "unknown command",
		"flag needs an argument", "invalid argument", "accepts ", "requires at least",
		"requires exactly", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

type globalOptions struct {
	verbose int
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	logger  *slog.Logger
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "hotpatch",
		Short: "Live patching of running C and C++ programs",
		Long: `hotpatch builds binary patches from source diffs and applies them to
running Linux processes without restarting them.

  build    build patch files from a source tree and diffs
  cc       the compiler wrapper used by build (also reachable as hotpatch-cc)
  gensrc   compare two assembly files and emit the patch assembly
  patch    apply patch files to running processes
  unpatch  remove applied patches from running processes
  info     show the objects and patches of running processes
  inspect  show the contents of a patch file
  daemon   keep every process patched as the patch store says
  status   ask the daemon how the store's patches are rolled out`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			switch {
			case g.verbose >= 2:
				level = slog.LevelDebug
			case g.verbose == 1:
				level = slog.LevelInfo
			}
			g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log more (repeat for debug output)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		newBuildCommand(g),
		newCCCommand(g),
		newGensrcCommand(g),
		newPatchCommand(g),
		newUnpatchCommand(g),
		newInfoCommand(g),
		newInspectCommand(g),
		newVersionCommand(g),
		newDemoCommand(g),
		newDaemonCommand(g),
		newStatusCommand(g),
	)
	return root
}
