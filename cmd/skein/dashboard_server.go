package main

import (
	"context"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/dashboard"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/statedir"
)

// backendSource shows a mesh running in this process (skein up).
type backendSource struct{ b api.Backend }

func (s backendSource) Status(context.Context) (api.Status, error) { return s.b.Status(), nil }

func (s backendSource) Config(context.Context) (*model.Mesh, error) {
	if cb, ok := s.b.(api.ConfigBackend); ok {
		return cb.Config(), nil
	}
	return &model.Mesh{}, nil
}

// clientSource shows a mesh through its local API (skein dashboard).
type clientSource struct{ c *api.Client }

func (s clientSource) Status(ctx context.Context) (api.Status, error)  { return s.c.Status(ctx) }
func (s clientSource) Config(ctx context.Context) (*model.Mesh, error) { return s.c.Config(ctx) }

// dashboardServer returns what skein up serves on its dashboard port.
func dashboardServer() func(ctx context.Context, ln net.Listener, b api.Backend) error {
	return func(ctx context.Context, ln net.Listener, b api.Backend) error {
		return dashboard.Serve(ctx, ln, dashboard.Options{Source: backendSource{b}})
	}
}

func newDashboardCmd() *cobra.Command {
	var stateDir, address string
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard of a running skein up: service graph, golden signals, routes, live tap",
		Long: `dashboard serves the same UI that skein up serves on its own port (see skein status),
for the mesh of --state-dir, on --address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inst, err := statedir.Read(stateDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ln, err := net.Listen("tcp", address)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dashboard: %s\n", dashboard.URL(ln.Addr().String()))
			return dashboard.Serve(cmd.Context(), ln, dashboard.Options{Source: clientSource{api.NewClient(inst.API)}, Logger: newLogger("info")})
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVar(&address, "address", "127.0.0.1:7070", "address to serve on")
	return cmd
}
