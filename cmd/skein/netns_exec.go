package main

import (
	"github.com/spf13/cobra"

	"skein.dev/skein/internal/netns"
)

// newNetnsExecCmd is the re-exec helper `skein up` starts pod processes with (hidden:
// users run `skein exec`). It never returns on success: the process becomes CMD.
func newNetnsExecCmd() *cobra.Command {
	var (
		name     string
		uid, gid int
	)
	cmd := &cobra.Command{
		Use:    "netns-exec [--netns NAME] [--uid N --gid N] -- CMD [ARGS...]",
		Short:  "Run CMD inside a named network namespace (as `ip netns exec`) and/or as another user",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return netns.Exec(netns.ExecOptions{Netns: name, UID: uid, GID: gid, Argv: args})
		},
	}
	cmd.Flags().StringVar(&name, "netns", "", "name of the network namespace (under /run/netns); empty: this one")
	cmd.Flags().IntVar(&uid, "uid", -1, "user id to run CMD as (-1: unchanged)")
	cmd.Flags().IntVar(&gid, "gid", -1, "group id to run CMD as (-1: unchanged)")
	return cmd
}
