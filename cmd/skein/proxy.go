package main

import (
	"errors"
	"flag"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/proxy/proxycmd"
)

// newProxyCmd is `skein proxy`. Its flags are proxycmd's, shared with the lean sidecar
// binary skein-proxy (cmd/skein-proxy), so both accept exactly the same command line.
func newProxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "proxy",
		Short:              "Run the skein proxy (sidecar or gateway), configured only by xDS",
		DisableFlagParsing: true, // proxycmd parses them
		RunE: func(cmd *cobra.Command, args []string) error {
			err := proxycmd.Main(cmd.Context(), "skein proxy", args, cmd.ErrOrStderr())
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		},
	}
}
