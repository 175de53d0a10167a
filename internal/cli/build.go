package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
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
	exactLines  bool
}

func newBuildCommand(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [-C SRCDIR] [-o OUTDIR] [--id ID] [-j N] PATCH.diff... [-- BUILD COMMAND...]",
		Short: "Build patch files from a source tree and one or more diffs",
		Long: `build runs the project's own build twice through the compiler wrapper:
once on the original sources and once with the diffs applied. It writes one
patch file per changed executable or shared library, named BUILDID.hpatch.
The default build command is make.

The build runs in SRCDIR itself, so that the objects are those of a plain
build. Afterwards the sources are restored and the changed objects rebuilt
from them. The original stage is kept in SRCDIR/patchroot/.hotpatch: a
later build on the unchanged tree reuses it.

A configured CMake or Meson folder calls the compiler by its full path:
hotpatch covers that file with the wrapper, for the build's processes only
(a private mount namespace: root or unprivileged user namespaces), and
writes no file of the folder. ccache is turned off for the build. With
dpkg-buildpackage as the build command, the patched stage and the restore
run only its build target (no clean step).

--target names a deployed binary (a symlink or a soname will do). It is
matched by build-id or, when the build-ids differ (a distribution's
stripped binary), by everything the loader maps from it; the patch is keyed
to the deployed build-id.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			diffs, command := args, []string(nil)
			if at := cmd.ArgsLenAtDash(); at >= 0 {
				diffs, command = args[:at], args[at:]
			}
			if len(diffs) == 0 {
				return usageErrorf("build: give at least one PATCH.diff before --")
			}
			return runBuild(g, o, diffs, command)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.srcDir, "directory", "C", ".", "source tree to build")
	f.StringVarP(&o.outDir, "output", "o", "", "where to write patch files (default SRCDIR/patchroot)")
	f.StringVar(&o.id, "id", "", "patch id, such as CVE-2024-1234 (default: from the diff names)")
	f.Uint32Var(&o.level, "level", 1, "patch level; a higher level replaces a lower one with the same id")
	f.StringVar(&o.description, "description", "", "free-text description stored in the patch")
	f.IntVarP(&o.jobs, "jobs", "j", 0, "parallel build jobs (passed to make as -j N)")
	f.BoolVar(&o.exactLines, "exact-lines", false, "compile the patched sources with their own line numbers; by default unchanged lines keep their original numbers, so that __LINE__ and assert move no function")
	f.StringArrayVar(&o.targets, "target", nil, "deployed binary or library whose build-id the original stage must reproduce (repeatable); when given, only these get patches")
	return cmd
}

func runBuild(g *globalOptions, o *buildOptions, diffs, command []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("build: find the hotpatch executable: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	isTTY := false
	if f, ok := g.stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			isTTY = true
		}
	}
	var lastStage string
	var lastLine time.Time
	progress := func(p build.Progress) {
		switch {
		case p.Reused && p.Stage == "original":
			fmt.Fprintln(g.stderr, "hotpatch: original stage: reusing the kept build (the tree is unchanged since the last patch build)")
			lastStage = p.Stage
			return
		case p.Stage == "extract" || p.Stage == "restore":
			if isTTY {
				fmt.Fprint(g.stderr, "\r\033[K")
			}
			if p.Stage != lastStage {
				fmt.Fprintf(g.stderr, "hotpatch: %s\n", map[string]string{"extract": "checking layout and extracting patches", "restore": "restoring the source tree"}[p.Stage])
			}
			lastStage = p.Stage
			return
		}
		line := fmt.Sprintf("hotpatch: %s stage: %d compilations done", p.Stage, p.Compiled)
		switch {
		case !isTTY && p.Stage != lastStage && !p.Done:
			fmt.Fprintf(g.stderr, "hotpatch: %s stage: building\n", p.Stage)
			lastLine = time.Now()
		case isTTY && p.Done:
			fmt.Fprintf(g.stderr, "\r\033[K%s\n", line)
		case isTTY:
			fmt.Fprintf(g.stderr, "\r\033[K%s", line)
		case p.Done || time.Since(lastLine) > 10*time.Second:
			fmt.Fprintln(g.stderr, line)
			lastLine = time.Now()
		}
		lastStage = p.Stage
	}
	res, err := build.Run(ctx, build.Options{
		SrcDir:      o.srcDir,
		OutDir:      o.outDir,
		Diffs:       diffs,
		Command:     command,
		Jobs:        o.jobs,
		ID:          o.id,
		Level:       o.level,
		Description: o.description,
		Targets:     o.targets,
		ExactLines:  o.exactLines,
		Self:        self,
		Env:         os.Environ(),
		Progress:    progress,
	})
	if isTTY {
		fmt.Fprint(g.stderr, "\r\033[K")
	}
	if res != nil {
		for _, n := range res.Notes {
			fmt.Fprintf(g.stderr, "hotpatch: %s\n", n)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(g.stderr, "hotpatch: warning: %s\n", w)
		}
	}
	if err != nil {
		if res != nil && res.LogPath != "" && !strings.Contains(err.Error(), res.LogPath) {
			return fmt.Errorf("build: %w (full log: %s)", err, res.LogPath)
		}
		return fmt.Errorf("build: %w", err)
	}
	for _, p := range res.Patches {
		fmt.Fprintf(g.stdout, "%s\t%s\tbuild-id %s\tfunctions: %s\n", p.Path, p.Target, p.BuildID, strings.Join(p.Functions, ", "))
	}
	fmt.Fprintf(g.stderr, "hotpatch: log: %s\n", res.LogPath)
	return nil
}
