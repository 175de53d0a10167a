package cli

import (
	"time"

	"github.com/spf13/cobra"
)

type targetOptions struct {
	pid  string
	json bool
}

func (t *targetOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.pid, "pid", "p", "", "process id, or \"all\" for every process the caller may trace")
	cmd.Flags().BoolVar(&t.json, "json", false, "print the result as JSON")
	_ = cmd.MarkFlagRequired("pid")
}

type patchOptions struct {
	targetOptions
	retries int
	timeout time.Duration
}

func newPatchCommand(g *globalOptions) *cobra.Command {
	o := &patchOptions{}
	cmd := &cobra.Command{
		Use:   "patch -p PID|all [--json] [--retries N] [--timeout D] FILE.hpatch|DIR",
		Short: "Apply patch files to running processes",
		Long: `patch applies a patch file, or every matching patch file of a directory, to
running processes. Each process gets exactly the patches whose build-id
matches one of its loaded objects.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("patch")
		},
	}
	o.register(cmd)
	cmd.Flags().IntVar(&o.retries, "retries", 10, "how often to retry while a thread is inside a function being replaced")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "give up retrying after this long")
	return cmd
}

type unpatchOptions struct {
	targetOptions
	id string
}

func newUnpatchCommand(g *globalOptions) *cobra.Command {
	o := &unpatchOptions{}
	cmd := &cobra.Command{
		Use:   "unpatch -p PID|all [-i ID] [--json]",
		Short: "Remove applied patches from running processes",
		Long:  `unpatch removes the most recent patch, or the patch with the given id.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("unpatch")
		},
	}
	o.register(cmd)
	cmd.Flags().StringVarP(&o.id, "id", "i", "", "remove the patch with this id instead of the most recent one")
	return cmd
}

func newInfoCommand(g *globalOptions) *cobra.Command {
	o := &targetOptions{}
	cmd := &cobra.Command{
		Use:   "info -p PID|all [--json]",
		Short: "Show the loaded objects and applied patches of running processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errNotImplemented("info")
		},
	}
	o.register(cmd)
	return cmd
}
