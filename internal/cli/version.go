package cli

import (
	"fmt"
	"runtime"

	"github.com/hotpatch/hotpatch/internal/version"
	"github.com/spf13/cobra"
)

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the hotpatch version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "hotpatch %s (patch format %s, %s/%s)\n",
				version.Version, version.PatchFormat, runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
