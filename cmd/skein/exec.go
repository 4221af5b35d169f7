package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/runtime/local/statedir"
	"skein.dev/skein/internal/runtime/local/supervisor"
)

func newExecCmd() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "exec WORKLOAD[.NAMESPACE] -- CMD [ARGS...]",
		Short: "Run a command as a workload would: in its pod (isolation netns) or through its sidecar, with its environment",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ns, _ := strings.Cut(args[0], ".")
			inst, err := statedir.Read(stateDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			env, err := api.NewClient(inst.API).ExecEnv(cmd.Context(), name, ns)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			argv := supervisor.ResolveCommand(args[1:], self)
			if env.Netns != "" {
				// Inside the pod, as kubectl exec: its network namespace and resolv.conf,
				// as the app's user (not the sidecar's).
				if os.Geteuid() != 0 {
					return &exitError{code: 2, err: fmt.Errorf("workload %s runs in network namespace %s: skein exec into it needs root", args[0], env.Netns)}
				}
				argv = append([]string{self, "netns-exec", "--netns", env.Netns, "--"}, argv...)
			}
			c := exec.CommandContext(cmd.Context(), argv[0], argv[1:]...)
			c.Env = append(os.Environ(), env.Env...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.ExitCode(), err: err}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	return cmd
}

func newDownCmd() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop a running skein up and everything it started",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := statedir.Read(stateDir)
			if err != nil {
				return err
			}
			if err := api.NewClient(inst.API).Down(cmd.Context()); err != nil {
				return err
			}
			for {
				if _, err := statedir.Read(stateDir); errors.Is(err, statedir.ErrNotRunning) {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	return cmd
}
