package cli

import (
	"github.com/spf13/cobra"
)

func newInspectCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE.hpatch [--json]",
		Short: "Show the contents of a patch file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("inspect")
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a stable JSON document instead of a table")
	return cmd
}
