// Command skein-proxy is the lean sidecar: only the proxy (the same flags as `skein
// proxy`), without the control plane, the config adapters or Kubernetes and Istio API
// types, so each sidecar maps and touches a smaller binary. `skein up` runs it when it
// lies next to the skein executable (or --proxy-binary / $SKEIN_PROXY_BINARY names it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"skein.dev/skein/internal/proxy/proxycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := proxycmd.Main(ctx, "skein-proxy", os.Args[1:], os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "skein-proxy:", err)
		os.Exit(1)
	}
}
