package cli

import (
	"fmt"
	"io"

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

// runCompilerWrapper runs the wrapper under the name it was called by and
// returns the exit status the build should see.
func runCompilerWrapper(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "hotpatch: %s: the compiler wrapper is not implemented yet\n", name)
	return exitUsage
}
