package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hotpatch/hotpatch/internal/daemon"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/trust"
	"github.com/hotpatch/hotpatch/internal/version"
	"github.com/spf13/cobra"
)

type daemonOptions struct {
	store     string
	socket    string
	tree      int
	execWatch []string
	noExec    bool
	interval  time.Duration
	workers   int
	config    string
	keys      string
}

func newDaemonCommand(g *globalOptions) *cobra.Command {
	o := &daemonOptions{}
	cmd := &cobra.Command{
		Use:   "daemon [--store DIR] [--socket PATH]",
		Short: "Keep every process patched as the patch store says",
		Long: `daemon makes the patch store the desired state of the host. Every .hpatch
file in the store is applied to every running process that loads its
object (executable or library), within a scan interval of the file
appearing; a file removed is unpatched; a higher level of a patch replaces
the lower one in one pause. Processes that fail (a thread busy in a
function being replaced, a process stopped in uninterruptible sleep) are
retried with back-off; "hotpatch status" shows the roll-out.

Programs started from the mounts of the --exec-watch paths are stopped at
their exec and patched at their entry point, before their constructors and
main. Libraries loaded later with dlopen are patched when the next scan
sees them. What is applied is read back from the processes, so a restarted
daemon loses nothing.

--tree confines the daemon to one process and its descendants (tests, or a
daemon that looks after one service).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(g, o)
		},
	}
	cmd.Flags().StringVar(&o.store, "store", daemon.DefaultStore, "the patch store: the directory of .hpatch files to keep applied")
	cmd.Flags().StringVar(&o.socket, "socket", daemon.DefaultSocket, "the status socket")
	cmd.Flags().IntVar(&o.tree, "tree", 0, "only touch this process and its descendants (0: every process)")
	cmd.Flags().StringSliceVar(&o.execWatch, "exec-watch", []string{"/", "/usr", "/opt", "/usr/local"},
		"patch programs started from the mounts of these paths before main")
	cmd.Flags().BoolVar(&o.noExec, "no-exec-watch", false, "do not watch executions; new programs are patched when a scan finds them")
	cmd.Flags().DurationVar(&o.interval, "interval", 500*time.Millisecond, "how often the store and the processes are scanned")
	cmd.Flags().StringVar(&o.config, "config", trust.DefaultConfig, "the host policy: whether store files must be signed, and by which keys")
	cmd.Flags().StringVar(&o.keys, "trusted-keys", "", "directory of trusted public keys (default: the configuration's, else "+trust.DefaultTrustedKeys+")")
	cmd.Flags().IntVar(&o.workers, "workers", 0, "processes worked on at once (0: two per CPU)")
	return cmd
}

func runDaemon(g *globalOptions, o *daemonOptions) error {
	if o.interval < 10*time.Millisecond || o.interval > time.Minute {
		return usageErrorf("--interval %v: want between 10ms and 1m", o.interval)
	}
	watch := o.execWatch
	if o.noExec {
		watch = nil
	}
	logger := g.logger
	if g.verbose == 0 {
		// A daemon's log is its record: what it applied and removed is
		// worth keeping by default.
		logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	pol, err := policy(o.config, o.keys, false)
	if err != nil {
		return err
	}
	d, err := daemon.New(daemon.Options{
		Store: o.store, Socket: o.socket, Tree: o.tree, ExecWatch: watch,
		Interval: o.interval, Workers: o.workers, Version: version.Version,
		Open: policyOpener(pol),
		Report: func(e daemon.Event) {
			logger.Log(context.Background(), e.Level, e.Msg, e.Attrs...)
		},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("daemon started", "store", o.store, "socket", o.socket, "pid", os.Getpid())
	if err := d.Run(ctx); err != nil {
		return err
	}
	logger.Info("daemon stopped")
	return nil
}

// policyOpener opens store files under the host policy: file checks, and
// signatures when the policy requires them. The state status reports is
// the verification's, or not-required when nothing is demanded of it.
func policyOpener(pol *trust.Policy) daemon.OpenFunc {
	return func(path string) (*patchfile.Patch, string, error) {
		p, err := pol.Open(path)
		if err != nil {
			// A file refused for what it is (unsafe mode, corrupt) says
			// so in the reason; its signature state stays the policy's.
			state := "not-required"
			switch {
			case errors.Is(err, trust.ErrInvalid):
				state = "invalid"
			case errors.Is(err, trust.ErrUnsigned):
				state = "unsigned"
			case errors.Is(err, trust.ErrUntrusted):
				state = "untrusted"
			}
			return nil, state, err
		}
		if !pol.RequireSignature {
			return p, "not-required", nil
		}
		return p, string(trust.Verified), nil
	}
}
