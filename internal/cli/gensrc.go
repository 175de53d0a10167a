package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/asmdiff"
)

type gensrcOptions struct {
	output string
	report string
}

func newGensrcCommand(g *globalOptions) *cobra.Command {
	o := &gensrcOptions{}
	cmd := &cobra.Command{
		Use:   "gensrc [-o OUT.s] [--json REPORT.json] ORIGINAL.s PATCHED.s",
		Short: "Compare two assembly files and emit the patch assembly",
		Long: `gensrc compares the assembly the compiler produced for one translation unit
before and after a source change. It writes the original assembly unchanged,
followed by patch sections that hold the changed and new functions and
variables, and reports what changed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGensrc(g, o, args[0], args[1])
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the augmented assembly here (default: standard output)")
	cmd.Flags().StringVar(&o.report, "json", "", "write a JSON report of what changed to this file")
	return cmd
}

func runGensrc(g *globalOptions, o *gensrcOptions, origPath, patchedPath string) error {
	original, err := os.ReadFile(origPath)
	if err != nil {
		return fmt.Errorf("read original assembly: %w", err)
	}
	patched, err := os.ReadFile(patchedPath)
	if err != nil {
		return fmt.Errorf("read patched assembly: %w", err)
	}
	out, rep, err := asmdiff.Generate(original, patched, asmdiff.Options{
		OriginalName: origPath, PatchedName: patchedPath,
	})
	if err != nil {
		return err
	}
	for _, w := range rep.Warnings {
		g.logger.Warn(w, "original", origPath, "patched", patchedPath)
	}
	for _, f := range rep.Functions {
		g.logger.Info("function "+f.Status, "name", f.Name, "symbols", f.Symbols)
	}
	for _, v := range rep.Variables {
		g.logger.Info("variable "+v.Status, "name", v.Name, "symbols", v.Symbols)
	}
	if o.report != "" {
		js, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if err := writeFileAtomic(o.report, append(js, '\n')); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if o.output == "" {
		if _, err := g.stdout.Write(out); err != nil {
			return fmt.Errorf("write augmented assembly: %w", err)
		}
		return nil
	}
	if err := writeFileAtomic(o.output, out); err != nil {
		return fmt.Errorf("write augmented assembly: %w", err)
	}
	return nil
}

// writeFileAtomic writes through a temporary file in the same folder, so
// that a build never sees half an output.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
