package main

import (
	"context"
	"net"

	"skein.dev/skein/internal/api"
)

// dashboardServer returns what skein up serves on its dashboard port.
func dashboardServer() func(ctx context.Context, ln net.Listener, b api.Backend) error {
	return nil
}
