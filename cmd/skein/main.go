// Command skein is the whole mesh in one binary: control plane, proxy, local runtime and
// the tools around them. Each subcommand lives in its own file; this one only wires them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "skein:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "skein",
		Short:         "skein is a service mesh in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newProxyCmd(),
		newEchoCmd(),
		newUpCmd(),
		newControlCmd(),
		newStatusCmd(),
		newExecCmd(),
		newDownCmd(),
		newCallCmd(),
		newNetnsExecCmd(),
		newInitCaptureCmd(),
		newCACmd(),
		newAnalyzeCmd(),
		newStatCmd(),
		newTopCmd(),
		newTapCmd(),
		newExplainCmd(),
		newDashboardCmd(),
		newGetCmd(),
		newBootstrapCmd(),
	)
	return root
}

// exitError carries a specific process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
