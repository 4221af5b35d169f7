package main

import "github.com/spf13/cobra"

// Placeholder: replaced by the echo command.
func newEchoCmd() *cobra.Command { return &cobra.Command{Use: "echo"} }
