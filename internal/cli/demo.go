package cli

import (
	"fmt"
	"os"

	"github.com/hotpatch/hotpatch/internal/demo"
	"github.com/spf13/cobra"
)

func newDemoCommand(g *globalOptions) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR] [--keep]",
		Short: "Patch a bug out of a running demo service, end to end",
		Long: `demo builds a small TCP service with a Heartbleed-style bug, starts it with a
client in the background, shows the bug, builds the fix with "hotpatch
build", applies it with "hotpatch patch" while the client keeps going, shows
the fix and the pause the service saw, then removes the patch and stops
everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("demo: find the hotpatch binary: %w", err)
			}
			o.Hotpatch = self
			o.Out = g.stdout
			_, err = demo.Run(cmd.Context(), o)
			return err
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "build the service in this folder (default: a temporary one)")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the folder afterwards")
	return cmd
}
