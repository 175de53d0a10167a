package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/trust"
	"github.com/spf13/cobra"
)

func newInspectCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	var keys, config string
	cmd := &cobra.Command{
		Use:   "inspect FILE.hpatch [--json]",
		Short: "Show the contents of a patch file",
		Long: `inspect checks a patch file (format, version, checksum) and shows every
field: the target object, the patch id and level, the functions it replaces,
its sections, symbols and relocations, and each signature: verified (by a
trusted key), untrusted (its key is not in the trusted-keys directory) or
invalid (it does not match the file). --json prints a stable document.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patchfile.ReadFile(args[0])
			if err != nil {
				return err
			}
			doc := patchfile.Describe(p)
			if len(p.Signatures) > 0 {
				pol, err := policy(config, keys, false)
				if err != nil {
					return err
				}
				v, err := pol.Verify(p)
				if err != nil {
					return err
				}
				for i, c := range v.Signatures {
					doc.Signatures[i].Status, doc.Signatures[i].Reason = string(c.Status), c.Reason
				}
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			return writeInspectText(g.stdout, doc)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a stable JSON document instead of a table")
	cmd.Flags().StringVar(&keys, "trusted-keys", "", "directory of trusted public keys (default: from the configuration, else "+trust.DefaultTrustedKeys+")")
	cmd.Flags().StringVar(&config, "config", trust.DefaultConfig, "the host configuration file")
	return cmd
}

func writeInspectText(w io.Writer, d *patchfile.Document) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	created := "unknown"
	if d.Created != nil {
		created = d.Created.Format("2006-01-02 15:04:05 UTC")
	}
	labels := strings.Join(d.Labels, ", ")
	if labels == "" {
		labels = "-"
	}
	for _, kv := range [][2]string{
		{"Patch", d.ID},
		{"Level", fmt.Sprint(d.Level)},
		{"Target", d.Target},
		{"Build-id", d.BuildID},
		{"Arch", d.Arch},
		{"Labels", labels},
		{"Created", created},
		{"Tool", d.ToolVersion},
		{"Format", d.FormatVersion},
		{"Checksum", d.Checksum},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if d.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", strings.ReplaceAll(d.Description, "\n", "\n\t"))
	}
	fmt.Fprintf(tw, "\nFunctions (%d):\n", len(d.Functions))
	fmt.Fprintf(tw, "  NAME\tOLD OFFSET\tOLD SIZE\tNEW SIZE\tREPLACEMENT\n")
	for _, f := range d.Functions {
		name := f.Name
		if f.RangeOnly {
			name += " (range only)"
		}
		fmt.Fprintf(tw, "  %s\t%#x\t%d\t%d\t%s\n", name, f.OldOffset, f.OldSize, f.NewSize, f.NewSymbol)
	}
	fmt.Fprintf(tw, "\nSections (%d):\n", len(d.Sections))
	fmt.Fprintf(tw, "  #\tNAME\tKIND\tALIGN\tSIZE\n")
	for _, s := range d.Sections {
		size := fmt.Sprint(s.Size)
		if s.NoBits {
			size += " (zero-filled)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%s\n", s.Index, s.Name, s.Kind, s.Align, size)
	}
	fmt.Fprintf(tw, "\nSymbols (%d):\n", len(d.Symbols))
	fmt.Fprintf(tw, "  #\tNAME\tKIND\tTYPE\tWHERE\tSIZE\n")
	for _, s := range d.Symbols {
		if s.Index == 0 {
			continue
		}
		name := s.Name
		if s.Version != "" {
			name += "@" + s.Version
		}
		where := fmt.Sprintf("%#x", s.Value)
		switch {
		case s.Section != nil:
			where = fmt.Sprintf("%s+%#x", sectionName(d, *s.Section), s.Value)
		case s.Kind == "external" || s.Kind == "external-tls":
			where = "by name"
		case s.Kind == "target":
			where = fmt.Sprintf("base+%#x", s.Value)
		case s.Kind == "tls":
			where = fmt.Sprintf("tls+%#x", s.Value)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\n", s.Index, name, s.Kind, s.Type, where, s.Size)
	}
	fmt.Fprintf(tw, "\nRelocations (%d):\n", len(d.Relocations))
	fmt.Fprintf(tw, "  PLACE\tTYPE\tSYMBOL\tADDEND\n")
	for _, r := range d.Relocations {
		fmt.Fprintf(tw, "  %s+%#x\t%s\t%s\t%d\n", r.Section, r.Offset, r.Type, r.Symbol, r.Addend)
	}
	if len(d.Signatures) > 0 {
		fmt.Fprintf(tw, "\nSignatures (%d):\n", len(d.Signatures))
		for _, s := range d.Signatures {
			status := s.Status
			if s.Reason != "" {
				status += ": " + s.Reason
			}
			fmt.Fprintf(tw, "  key %s\t%s\n", s.KeyID, status)
		}
	}
	return tw.Flush()
}

func sectionName(d *patchfile.Document, i int) string {
	if i >= 0 && i < len(d.Sections) {
		return d.Sections[i].Name
	}
	return fmt.Sprint(i)
}
