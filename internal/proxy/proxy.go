// Package proxy is skein's data plane: an xDS-configured HTTP/TCP proxy. Run wires the
// ADS client, the compiled config (swapped atomically), the listeners and the admin
// server, and stops them all gracefully when its context ends.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/forward"
	"skein.dev/skein/internal/proxy/listener"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// NodeMetadataKey is the node.metadata key holding the JSON-encoded model.Proxy.
const NodeMetadataKey = "SKEIN_PROXY"

// Options configure Run.
type Options struct {
	XDSAddress   string // host:port of the ADS server (plaintext gRPC)
	Node         *model.Proxy
	AdminAddress string // e.g. 127.0.0.1:15000, or :0
	Logger       *slog.Logger
	// OnAdminListening, optional, learns the admin server's bound address.
	OnAdminListening func(addr string)
	// Pprof serves Go's profiler at /debug/pprof/ on the admin address.
	Pprof bool
}

// Run runs the proxy until ctx is done, then stops gracefully.
func Run(ctx context.Context, opts Options) error {
	if opts.XDSAddress == "" {
		return errors.New("proxy: xds address is required")
	}
	if opts.Node == nil || opts.Node.ID == "" {
		return errors.New("proxy: node with an id is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	node, err := NodeProto(opts.Node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	metrics := stats.New()
	var cfg atomic.Pointer[forward.Config]
	fwd := forward.New(forward.Options{Config: &cfg, Metrics: metrics, Logger: log})
	defer fwd.Close()
	listeners := listener.NewManager(ctx, listener.Options{
		Logger:      log,
		HTTPHandler: fwd.HTTPHandler,
		ServeTCP:    fwd.ServeTCP,
	})
	defer listeners.Close()

	var ready atomic.Bool
	client := xdsclient.New(xdsclient.Options{
		Address: opts.XDSAddress,
		Node:    node,
		Logger:  log,
		OnResponse: func(typeURL string, accepted bool) {
			metrics.XDSUpdate(shortType(typeURL), accepted)
		},
		// Called on the client's goroutine, which is the only writer of cfg and the
		// only caller of listeners.Apply.
		OnUpdate: func(u xdsclient.Update) {
			next := forward.Compile(u, cfg.Load())
			cfg.Store(next)
			if err := listeners.Apply(specs(next)); err != nil {
				log.Error("binding listeners", "error", err)
			}
			ready.Store(true)
			log.Info("config applied", "listeners", len(u.Listeners), "routes", len(u.Routes), "clusters", len(u.Clusters), "endpoints", len(u.Endpoints))
		},
	})

	adminErr := make(chan error, 1)
	go func() {
		err := admin.Serve(ctx, admin.Options{
			Address:     opts.AdminAddress,
			Logger:      log,
			Ready:       ready.Load,
			Status:      client.Status,
			Metrics:     metrics,
			OnListening: opts.OnAdminListening,
			Pprof:       opts.Pprof,
		})
		if err != nil {
			cancel() // without its admin server the proxy cannot report readiness
		}
		adminErr <- err
	}()
	clientErr := client.Run(ctx)
	cancel()
	if err := <-adminErr; err != nil {
		return fmt.Errorf("proxy admin server: %w", err)
	}
	return clientErr
}

// NodeProto builds the xDS node for a proxy, as docs/XDS.md specifies.
func NodeProto(p *model.Proxy) (*corev3.Node, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding node metadata: %w", err)
	}
	md, err := structpb.NewStruct(map[string]any{NodeMetadataKey: string(raw)})
	if err != nil {
		return nil, fmt.Errorf("encoding node metadata: %w", err)
	}
	return &corev3.Node{
		Id:       p.ID,
		Cluster:  p.Workload.Name + "." + p.Workload.Namespace,
		Metadata: md,
	}, nil
}

func specs(cfg *forward.Config) []listener.Spec {
	out := make([]listener.Spec, 0, len(cfg.Listeners))
	for _, l := range cfg.Listeners {
		out = append(out, listener.Spec{Name: l.Name, Address: l.Address, HTTP: l.Routes != nil || l.TCP == nil, Codec: l.Codec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func shortType(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "lds"
	case resource.RouteType:
		return "rds"
	case resource.ClusterType:
		return "cds"
	case resource.EndpointType:
		return "eds"
	}
	return "unknown"
}
