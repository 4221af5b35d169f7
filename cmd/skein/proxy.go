package main

import "github.com/spf13/cobra"

// Placeholder: replaced by the proxy's command.
func newProxyCmd() *cobra.Command { return &cobra.Command{Use: "proxy"} }
