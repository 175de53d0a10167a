package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/hotpatch/hotpatch/internal/asmdiff"
	"github.com/hotpatch/hotpatch/internal/wrapper"
	"github.com/spf13/cobra"
)

func newCCCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "cc [COMPILER ARGS...]",
		Short: "The compiler wrapper (also reachable as hotpatch-cc)",
		Long: `cc stands in for the C or C++ compiler during "hotpatch build". Outside a
build it behaves exactly like the real compiler.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := runCompilerWrapper("cc", args, g.stdin, g.stdout, g.stderr); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("compiler failed with status %d", code)}
			}
			return nil
		},
	}
}

// assemblyDiffer is the differ the wrapper runs in the patched stage: the
// one behind "hotpatch gensrc", called in-process.
var assemblyDiffer wrapper.Differ = func(original, patched []byte, file string) ([]byte, []wrapper.Change, error) {
	out, rep, err := asmdiff.Generate(original, patched, asmdiff.Options{
		OriginalName: file + " (original)",
		PatchedName:  file,
	})
	if err != nil {
		return nil, nil, err
	}
	var changes []wrapper.Change
	for _, c := range rep.Functions {
		changes = append(changes, wrapper.Change{Name: c.Name, Status: c.Status})
	}
	for _, c := range rep.Variables {
		changes = append(changes, wrapper.Change{Name: c.Name, Status: c.Status})
	}
	return out, changes, nil
}

// runCompilerWrapper runs the wrapper under the name it was called by and
// returns the exit status the build should see.
func runCompilerWrapper(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	self, _ := os.Executable()
	w := &wrapper.Wrapper{
		Name:   name,
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Getenv: os.Getenv,
		Differ: assemblyDiffer,
		Self:   self,
	}
	status, err := w.Run(args)
	if err != nil {
		fmt.Fprintf(stderr, "hotpatch: %s\n", oneLine(err.Error()))
		if status == 0 {
			status = exitFailure
		}
	}
	return status
}
