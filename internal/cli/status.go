package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hotpatch/hotpatch/internal/daemon"
	"github.com/spf13/cobra"
)

type statusOptions struct {
	socket string
	json   bool
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--socket PATH] [--json]",
		Short: "Ask the daemon how the patches of its store are rolled out",
		Long: `status asks the running daemon, per patch file of its store: its state
(active, or rejected and why), the processes that carry it, those where it
failed (the error, the attempts, the next retry) and those still pending.
A patch is rolled out on the host when it is active and nothing failed or
is pending. Exit status 0 when the daemon answered, 1 when it could not be
reached. --json prints the document described in docs/daemon.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := daemon.Query(o.socket, 5*time.Second)
			if err != nil {
				return err
			}
			if o.json {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			writeStatus(g.stdout, s)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.socket, "socket", daemon.DefaultSocket, "the daemon's status socket")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the status as JSON")
	return cmd
}

func writeStatus(w io.Writer, s *daemon.Status) {
	fmt.Fprintf(w, "daemon pid %d, version %s, started %s\nstore %s, socket %s\n",
		s.Daemon.Pid, s.Daemon.Version, s.Daemon.Started, s.Daemon.Store, s.Daemon.Socket)
	if len(s.Patches) == 0 {
		fmt.Fprintln(w, "\nthe store holds no patch files")
		return
	}
	for _, p := range s.Patches {
		fmt.Fprintf(w, "\n%s\n", p.File)
		if p.State == "rejected" {
			fmt.Fprintf(w, "  REJECTED (signature %s): %s\n", p.Signature, p.Reason)
			continue
		}
		rolled := "rolled out"
		if !p.Rolled() {
			rolled = "rolling out"
		}
		fmt.Fprintf(w, "  %s level %d for build-id %s, signature %s: %s (%d applied, %d failed, %d pending)\n",
			p.ID, p.Level, p.BuildID, p.Signature, rolled, len(p.Applied), len(p.Failed), len(p.Pending))
		for _, a := range p.Applied {
			fmt.Fprintf(w, "  applied  pid %-7d %s (%s) at %s, pause %d µs\n", a.Pid, a.Exe, a.Object, a.At, a.PauseUS)
		}
		for _, f := range p.Failed {
			fmt.Fprintf(w, "  FAILED   pid %-7d %s: %s (attempt %d, next at %s)\n", f.Pid, f.Exe, f.Error, f.Attempts, f.NextRetry)
		}
		for _, q := range p.Pending {
			fmt.Fprintf(w, "  pending  pid %-7d %s\n", q.Pid, q.Exe)
		}
	}
}
