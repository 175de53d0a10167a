package cli

import (
	"github.com/spf13/cobra"
)

type gensrcOptions struct {
	output string
	report string
}

func newGensrcCommand(g *globalOptions) *cobra.Command {
	o := &gensrcOptions{}
	cmd := &cobra.Command{
		Use:   "gensrc [-o OUT.s] [--json REPORT.json] ORIGINAL.s PATCHED.s",
		Short: "Compare two assembly files and emit the patch assembly",
		Long: `gensrc compares the assembly the compiler produced for one translation unit
before and after a source change. It writes the original assembly unchanged,
followed by patch sections that hold the changed and new functions and
variables, and reports what changed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("gensrc")
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the augmented assembly here (default: standard output)")
	cmd.Flags().StringVar(&o.report, "json", "", "write a JSON report of what changed to this file")
	return cmd
}
