package cli

import (
	"fmt"

	"github.com/hotpatch/hotpatch/internal/trust"
	"github.com/spf13/cobra"
)

func newKeygenCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Make an Ed25519 key pair for signing patches",
		Long: `keygen writes PREFIX.key, the private key (mode 0600), and PREFIX.pub, the
public key, both PEM (the forms openssl reads). Keep PREFIX.key where only
the people who release patches can read it; copy PREFIX.pub into the
trusted-keys directory of every host that should accept their patches
(default /etc/hotpatch/trusted-keys). Existing files are never overwritten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := trust.GenerateKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "key %s: private %s.key, public %s.pub\n", id, args[0], args[0])
			return nil
		},
	}
}

func newSignCommand(g *globalOptions) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "sign --key PREFIX.key FILE.hpatch...",
		Short: "Sign patch files",
		Long: `sign adds an Ed25519 signature over each patch file's content and checksum
after its last record, and rewrites the file in one rename. The file stays
a valid patch for any hotpatch; signing it again with the same key changes
nothing, and other keys' signatures are kept.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range args {
				id, err := trust.SignFile(key, f)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "%s: signed with key %s\n", f, id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the private key (PREFIX.key from hotpatch keygen)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
