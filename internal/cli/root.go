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
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/hotpatch/hotpatch/internal/patcher"
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
	root, g := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args[1:])
	err := root.Execute()
	if perr := g.stopProfile(); perr != nil && err == nil {
		err = perr
	}
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
	// cpuProfile names the file a CPU profile of the command goes to
	// (hidden flag --cpuprofile, for measuring the command's own cost).
	cpuProfile  string
	profileFile *os.File
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
	logger      *slog.Logger
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *globalOptions) {
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
  keygen   make a key pair for signing patches
  sign     sign patch files
  daemon   keep every process patched as the patch store says
  status   ask the daemon how the store's patches are rolled out`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelWarn
			switch {
			case g.verbose >= 2:
				level = slog.LevelDebug
			case g.verbose == 1:
				level = slog.LevelInfo
			}
			g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			if processCommands[cmd.Name()] {
				patcher.UseObjectCache(objectCacheDir())
				quietGC()
			}
			return g.startProfile()
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newGendocsCommand(g)) // hidden: packagers only
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log more (repeat for debug output)")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
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
		newKeygenCommand(g),
		newSignCommand(g),
		newVersionCommand(g),
		newDemoCommand(g),
		newDaemonCommand(g),
		newStatusCommand(g),
	)
	return root, g
}

// processCommands read the ELF objects of running processes.
var processCommands = map[string]bool{"patch": true, "unpatch": true, "info": true}

// shortCommandMemoryLimit bounds the heap of a command that runs with
// the collector off: patching every process of a host keeps one model per
// distinct object, tens of megabytes; past this the collector runs again.
const shortCommandMemoryLimit = 256 << 20

// quietGC turns the garbage collector off for a command that touches
// processes, unless GOGC or GOMEMLIMIT say otherwise. Such a command runs
// for milliseconds and allocates a few megabytes; a collection in the
// middle of it puts the runtime's mark workers on the CPUs of the
// threads it has just resumed, or of the one it keeps stopped.
func quietGC() {
	_, gogc := os.LookupEnv("GOGC")
	_, limit := os.LookupEnv("GOMEMLIMIT")
	if gogc || limit {
		return
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(shortCommandMemoryLimit)
}

// objectCacheDir is where parsed ELF objects are kept between commands:
// $HOTPATCH_CACHE_DIR, or hotpatch/objects in the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache). HOTPATCH_CACHE_DIR=off turns it off.
func objectCacheDir() string {
	if dir, ok := os.LookupEnv("HOTPATCH_CACHE_DIR"); ok {
		if dir == "off" {
			return ""
		}
		return dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(base, "hotpatch", "objects")
}

// profileRate samples the command ten times more often than pprof's
// default: a patch command runs for milliseconds, and profiles of many
// runs are merged (go tool pprof a b c ...) to see its fixed cost.
const profileRate = 1000

func (g *globalOptions) startProfile() error {
	if g.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(g.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	// SetCPUProfileRate before StartCPUProfile is the documented way to
	// change the rate; StartCPUProfile then warns on stderr that the
	// rate is already set, which is harmless here.
	runtime.SetCPUProfileRate(profileRate)
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	g.profileFile = f
	return nil
}

func (g *globalOptions) stopProfile() error {
	if g.profileFile == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := g.profileFile.Close()
	g.profileFile = nil
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	return nil
}
