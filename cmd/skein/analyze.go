package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/analyze"
)

// exitAnalyzeFindings is istioctl analyze's exit code for "issues found".
const exitAnalyzeFindings = 79

func newAnalyzeCmd() *cobra.Command {
	var output, threshold string
	cmd := &cobra.Command{
		Use:   "analyze [DIR|FILE...]",
		Short: "Check a folder of configuration for mistakes, as istioctl analyze does",
		Long: `analyze loads the configuration (the same loader as skein up) and runs static checks.
Each finding has a code (SKnnnn), a severity, file:line and a hint. It exits 79 when a
finding at or above --failure-threshold (default Error) is found, 0 otherwise.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			min, err := analyze.ParseSeverity(threshold)
			if err != nil {
				return err
			}
			findings := analyze.Run(args...)
			out := cmd.OutOrStdout()
			switch output {
			case "text", "":
				analyze.WriteText(out, findings)
			case "json":
				if findings == nil {
					findings = []analyze.Finding{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(findings); err != nil {
					return err
				}
			default:
				return fmt.Errorf("-o %q: want text or json", output)
			}
			if sev, ok := analyze.Max(findings); ok && sev >= min {
				return &exitError{code: exitAnalyzeFindings, err: fmt.Errorf("analyze: found %s findings", sev)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&threshold, "failure-threshold", "Error", "lowest severity that makes the exit code 79: Info, Warning or Error")
	return cmd
}
