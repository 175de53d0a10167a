package cli

import (
	"github.com/spf13/cobra"
)

type buildOptions struct {
	srcDir      string
	outDir      string
	id          string
	level       uint32
	description string
	jobs        int
	targets     []string
}

func newBuildCommand(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [-C SRCDIR] [-o OUTDIR] [--id ID] [-j N] PATCH.diff... [-- BUILD COMMAND...]",
		Short: "Build patch files from a source tree and one or more diffs",
		Long: `build runs the project's own build twice through the compiler wrapper:
once on the original sources and once with the diffs applied. It writes one
patch file per changed executable or shared library, named BUILDID.hpatch.
The default build command is make.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("build")
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.srcDir, "directory", "C", ".", "source tree to build")
	f.StringVarP(&o.outDir, "output", "o", "", "where to write patch files (default SRCDIR/patchroot)")
	f.StringVar(&o.id, "id", "", "patch id, such as CVE-2024-1234")
	f.Uint32Var(&o.level, "level", 1, "patch level; a higher level replaces a lower one with the same id")
	f.StringVar(&o.description, "description", "", "free-text description stored in the patch")
	f.IntVarP(&o.jobs, "jobs", "j", 0, "parallel build jobs (passed to make as -j N)")
	f.StringArrayVar(&o.targets, "target", nil, "deployed binary or library whose build-id the original stage must reproduce (repeatable)")
	return cmd
}
