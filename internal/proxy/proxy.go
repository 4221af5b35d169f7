// Package proxy is skein's data plane: an xDS-configured HTTP/TCP proxy. Run wires the
// ADS client, the compiled config (swapped atomically), the listeners and the admin
// server, and stops them all gracefully when its context ends.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	mdns "github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/accesslog"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/filter/jwtauthn"
	"skein.dev/skein/internal/proxy/forward"
	"skein.dev/skein/internal/proxy/listener"
	"skein.dev/skein/internal/proxy/ondemand"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/tap"
	"skein.dev/skein/internal/proxy/telemetry"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/tracing"
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

	// MetricsAddress, when set, serves GET /stats/prometheus there too (Istio's
	// :15020 merged metrics port); the admin port always serves it.
	// Pprof serves Go's profiler at /debug/pprof/ on the admin address.
	Pprof bool

	// MetricsAddress, when set, serves GET /stats/prometheus there too (Istio's
	// :15020 merged metrics port); the admin port always serves it.
	MetricsAddress string
	// DropMetricLabels removes standard labels from every istio_* metric.
	DropMetricLabels []string
	// AccessLogPath, when set, gets one JSON line per request or connection ("-" is
	// standard output).
	AccessLogPath string
	// Tracing, when set, exports a span per request.
	Tracing *tracing.Options
	// OnDemandHold is how long a request for a host the proxy's (scoped) config lacks
	// waits for the control plane to add it; ondemand.DefaultHold when zero.
	OnDemandHold time.Duration
	// Identity, optional, gives the proxy a workload certificate (the SDS secret
	// "default") obtained by CSR from the control plane at XDSAddress. Without it, TLS
	// contexts naming "default" never become ready.
	Identity *IdentityOptions
}

// IdentityOptions say how the proxy obtains its workload certificate.
type IdentityOptions struct {
	// TokenFile holds the one-time bootstrap credential the runtime issued.
	TokenFile string
	// TrustDomain of the SPIFFE ID; model.DefaultTrustDomain when empty.
	TrustDomain string
	// TTL to request; zero asks for the CA's default.
	TTL time.Duration
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
	tapHub := tap.NewHub(opts.Node.ID)
	var localPrincipal string
	if opts.Identity != nil {
		id, err := workloadID(opts)
		if err != nil {
			return err
		}
		localPrincipal = id.String()
	}
	tel, err := telemetry.New(telemetry.Options{
		Node: opts.Node, Registry: metrics.Registry,
		Metrics: telemetry.MetricsOptions{DropLabels: opts.DropMetricLabels, LocalPrincipal: localPrincipal},
		Sinks:   []telemetry.Sink{tapHub},
	})
	if err != nil {
		return err
	}
	var alog *accesslog.Logger
	if opts.AccessLogPath != "" {
		w, err := openAccessLog(opts.AccessLogPath)
		if err != nil {
			return err
		}
		// The writer outlives ctx by a little: it drains and flushes after the
		// listeners stopped.
		logCtx, stopLog := context.WithCancel(context.WithoutCancel(ctx))
		alog = accesslog.Start(logCtx, w, accesslog.Options{Proxy: opts.Node.ID, Logger: log, Registry: metrics.Registry})
		tel.AddSink(alog)
		defer func() { stopLog(); alog.Wait() }()
	}
	var tracer *tracing.Tracer
	if opts.Tracing != nil {
		topts := *opts.Tracing
		topts.Node, topts.Logger = opts.Node, log
		if tracer, err = tracing.New(ctx, topts); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			defer cancel()
			if err := tracer.Shutdown(sctx); err != nil {
				log.Warn("flushing spans", "error", err)
			}
		}()
	}
	filterDeps := forward.FilterDeps{
		Logger: log,
		RBAC:   stats.NewRBAC(metrics.Registry),
		JWKS:   jwtauthn.NewCache(ctx, jwtauthn.CacheOptions{Logger: log}),
	}
	var cfg atomic.Pointer[forward.Config]
	fwdOpts := forward.Options{Config: &cfg, Metrics: metrics, Telemetry: tel, Tracer: tracer, Logger: log}
	od, stopOnDemand, err := startOnDemand(ctx, opts, metrics, log)
	if err != nil {
		return err
	}
	defer stopOnDemand()
	if od != nil {
		fwdOpts.OnUnknownHost = od.Await
	}
	fwd := forward.New(fwdOpts)
	defer fwd.Close()
	listeners := listener.NewManager(ctx, listener.Options{
		Logger: log,
		Lookup: func(name string) listener.Listener {
			if c := cfg.Load(); c != nil && c.Listeners[name] != nil {
				return c.Listeners[name]
			}
			return nil
		},
		HTTPHandler: fwd.HTTPHandler,
		ServeTCP:    fwd.ServeTCP,
		DNSHandler:  func(name string) mdns.Handler { return fwd.DNSHandler(name) },
		Refused:     metrics.ConnectionRefused,
	})
	defer listeners.Close()

	id, stopIdentity, err := startIdentity(ctx, opts, log)
	if err != nil {
		return err
	}
	defer stopIdentity()
	env := tlsconf.Env{}
	var localSecrets []string
	if id != nil {
		env.Identity = id
		localSecrets = []string{tlsconf.DefaultSecret}
	}

	var ready atomic.Bool
	client := xdsclient.New(xdsclient.Options{
		Address:      opts.XDSAddress,
		Node:         node,
		Logger:       log,
		LocalSecrets: localSecrets,
		OnResponse: func(typeURL string, accepted bool) {
			metrics.XDSUpdate(shortType(typeURL), accepted)
		},
		// Called on the client's goroutine, which is the only writer of cfg and the
		// only caller of listeners.Apply.
		OnUpdate: func(u xdsclient.Update) {
			next, err := forward.CompileWith(u, cfg.Load(), env, filterDeps)
			if err != nil {
				log.Error("config applied with broken TLS contexts", "error", err)
			}
			cfg.Store(next)
			if err := listeners.Apply(specs(next)); err != nil {
				log.Error("binding listeners", "error", err)
			}
			ready.Store(true)
			if od != nil {
				od.ConfigApplied()
			}
			log.Info("config applied", "listeners", len(u.Listeners), "routes", len(u.Routes), "clusters", len(u.Clusters), "endpoints", len(u.Endpoints))
		},
	})

	adminErr := make(chan error, 1)
	if opts.MetricsAddress != "" {
		go func() {
			if err := admin.ServeMetrics(ctx, opts.MetricsAddress, metrics); err != nil {
				log.Error("metrics server", "address", opts.MetricsAddress, "error", err)
			}
		}()
	}
	go func() {
		err := admin.Serve(ctx, admin.Options{
			Address: opts.AdminAddress,
			Logger:  log,
			Ready: func() bool {
				return ready.Load() && (id == nil || id.Certificate() != nil)
			},
			Certs:   certsStatus(id, client.Status),
			Status:  client.Status,
			Metrics: metrics,
			Tap:     tapHub,
			Explain: func(req admin.ExplainRequest) (any, error) {
				return fwd.ExplainConn(forward.ExplainInput{Listener: req.Listener, Destination: req.Destination, TLS: req.TLS,
					SourcePrincipal: req.SourcePrincipal, SourceAddress: req.SourceAddress, Request: req.Request()})
			},
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
	node := &corev3.Node{
		Id:       p.ID,
		Cluster:  p.Workload.Name + "." + p.Workload.Namespace,
		Metadata: md,
	}
	// The proxy's locality, from its workload's topology labels as Istio takes it from
	// the node: the control plane orders endpoints by it (locality failover).
	if loc := model.LocalityOf(p.Labels); !loc.IsZero() {
		node.Locality = &corev3.Locality{Region: loc.Region, Zone: loc.Zone, SubZone: loc.Subzone}
	}
	return node, nil
}

func specs(cfg *forward.Config) []listener.Spec {
	out := make([]listener.Spec, 0, len(cfg.Listeners))
	for _, l := range cfg.Listeners {
		out = append(out, listener.Spec{Name: l.Name, Address: l.Address, UDP: l.UDP})
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
	case resource.SecretType:
		return "sds"
	}
	return "unknown"
}

func openAccessLog(path string) (io.WriteCloser, error) {
	if path == "-" {
		return nopCloser{os.Stdout}, nil
	}
	// An inherited descriptor (/dev/fd/N): the file was opened by whoever started the
	// proxy, e.g. `skein up` for a sidecar that runs as another user and cannot open
	// paths in its state dir.
	if n, ok := strings.CutPrefix(path, "/dev/fd/"); ok {
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			return os.NewFile(uintptr(fd), path), nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// reportUsedEvery is how often a proxy whose scope is inferred from traffic reports
// the services it sent requests to (well under the shortest sensible TTL).
const reportUsedEvery = time.Minute

// startOnDemand connects a sidecar to the control plane's scope service
// (internal/proxy/ondemand): requests for hosts its config lacks ask for them, and
// used hosts are reported. Gateways are not scoped, so they do not use it.
func startOnDemand(ctx context.Context, opts Options, metrics *stats.Metrics, log *slog.Logger) (*ondemand.Client, func(), error) {
	if opts.Node.Role == model.RoleGateway {
		return nil, func() {}, nil
	}
	conn, err := grpc.NewClient(opts.XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("scope service: %w", err)
	}
	od := ondemand.New(ondemand.Options{Conn: conn, ProxyID: opts.Node.ID, Logger: log, Hold: opts.OnDemandHold})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		od.Report(rctx, reportUsedEvery, ondemand.UsedHosts(metrics.Registry))
	}()
	return od, func() { cancel(); <-done; conn.Close() }, nil
}
