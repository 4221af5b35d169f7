// Package proxycmd is the proxy's command line, shared by `skein proxy` and the lean
// sidecar binary `skein-proxy` (cmd/skein-proxy). It uses the standard flag package
// and imports only the proxy, so the sidecar binary carries no control plane, config
// adapters or Kubernetes types (docs/BENCHMARKS.md: idle RSS is mostly the binary's
// touched text and data).
package proxycmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/proxy/gctune"
	"skein.dev/skein/internal/proxy/tracing"
)

// FlagSet is what TracingFlags registers on: both the standard flag.FlagSet and
// pflag's (cobra's) have these methods.
type FlagSet interface {
	StringVar(p *string, name, value, usage string)
	Float64Var(p *float64, name string, value float64, usage string)
}

// TracingFlags are the tracing flags shared by the proxy and `skein up`, which passes
// them on to its sidecars.
type TracingFlags struct {
	Exporter, Endpoint string
	Sampling           float64
}

// Register adds the --tracing-* flags to f.
func (t *TracingFlags) Register(f FlagSet) {
	f.StringVar(&t.Exporter, "tracing-exporter", "", "export a span per request: otlp-grpc, otlp-http or zipkin (empty: no tracing)")
	f.StringVar(&t.Endpoint, "tracing-endpoint", "", "collector: host:port for OTLP, http://host:9411/api/v2/spans for zipkin")
	f.Float64Var(&t.Sampling, "tracing-sampling", 100, "percentage of new traces sampled (0-100); a sampled parent is always followed")
}

// Options returns nil when tracing is off.
func (t *TracingFlags) Options() (*tracing.Options, error) {
	if t.Exporter == "" && t.Endpoint == "" {
		return nil, nil
	}
	o := &tracing.Options{Exporter: t.Exporter, Endpoint: t.Endpoint, SamplingPercent: t.Sampling}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("--tracing-*: %w", err)
	}
	return o, nil
}

// Args renders the flags for a child proxy.
func (t *TracingFlags) Args() []string {
	if t.Exporter == "" && t.Endpoint == "" {
		return nil
	}
	return []string{"--tracing-exporter", t.Exporter, "--tracing-endpoint", t.Endpoint, "--tracing-sampling", fmt.Sprint(t.Sampling)}
}

// listFlag is a comma-separated list flag that may also be repeated (as pflag's
// StringSlice, which `skein proxy` used before).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.Split(v, ",")...)
	return nil
}

// Main parses the proxy's flags from args (without the program or subcommand name)
// and runs the proxy until ctx ends. Usage and flag errors go to stderr; -h returns
// flag.ErrHelp.
func Main(ctx context.Context, name string, args []string, stderr io.Writer) error {
	var (
		xdsAddress, nodeJSON, nodeFile, adminAddress, logLevel string
		metricsAddress, accessLog                              string
		dropLabels                                             listFlag
		tr                                                     TracingFlags
		tokenFile, trustDomain                                 string
		certTTL                                                time.Duration
		pprof                                                  bool
		heapFloor                                              = gctune.Bytes(gctune.DefaultHeapFloor)
		memoryLimit                                            = gctune.Bytes(gctune.DefaultMemoryLimit)
	)
	f := flag.NewFlagSet(name, flag.ContinueOnError)
	f.SetOutput(stderr)
	f.Usage = func() {
		fmt.Fprintf(stderr, "Run the skein proxy (sidecar or gateway), configured only by xDS.\n\nUsage: %s [flags]\n\nFlags:\n", name)
		f.PrintDefaults()
	}
	f.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of the control plane's ADS server")
	f.StringVar(&nodeJSON, "node-json", "", "the proxy's identity as model.Proxy JSON")
	f.StringVar(&nodeFile, "node-file", "", "file holding the proxy's identity as model.Proxy JSON")
	f.StringVar(&adminAddress, "admin-address", "127.0.0.1:15000", "address of the admin server (/ready, /config_dump, /stats/prometheus)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&metricsAddress, "metrics-address", "", "also serve /stats/prometheus on this address (Istio's :15020)")
	f.StringVar(&accessLog, "access-log", "", "write a JSON access log line per request/connection to this file (- for stdout)")
	f.Var(&dropLabels, "metrics-drop-labels", "standard istio_* metric labels to remove (cardinality), e.g. source_principal,destination_principal")
	tr.Register(f)
	f.StringVar(&tokenFile, "ca-token-file", "", "file holding the bootstrap credential for the workload certificate (CSR to the control plane's CA); without it the proxy has no mTLS identity")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of the proxy's SPIFFE ID")
	f.DurationVar(&certTTL, "cert-ttl", 0, "certificate lifetime to request (0: the CA's default)")
	f.BoolVar(&pprof, "pprof", os.Getenv("SKEIN_PROXY_PPROF") != "", "serve Go's profiler at /debug/pprof/ on the admin address (default on when $SKEIN_PROXY_PPROF is set, which sidecars started by skein up inherit)")
	f.Var(&heapFloor, "gc-heap-floor", "let the Go heap grow to this size before collecting (fewer GC cycles for a small live heap; larger heaps keep GOGC's default); 0: off, and off when $GOGC is set")
	f.Var(&memoryLimit, "memory-limit", "soft memory limit of the Go runtime (debug.SetMemoryLimit); 0: off; $GOMEMLIMIT wins")
	if v := os.Getenv("SKEIN_PROXY_GC_HEAP_FLOOR"); v != "" { // benchmarks: set through skein up
		if err := heapFloor.Set(v); err != nil {
			return fmt.Errorf("$SKEIN_PROXY_GC_HEAP_FLOOR: %w", err)
		}
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", f.Args())
	}
	if nodeJSON != "" && nodeFile != "" {
		return errors.New("--node-json and --node-file are mutually exclusive")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	node, err := ReadNode(nodeJSON, nodeFile)
	if err != nil {
		return err
	}
	tracing, err := tr.Options()
	if err != nil {
		return err
	}
	if applied := gctune.Start(ctx, gctune.Options{HeapFloor: uint64(heapFloor), MemoryLimit: int64(memoryLimit)}); len(applied) > 0 {
		log.Debug("go runtime tuned", "applied", applied, "heapFloor", heapFloor.String(), "memoryLimit", memoryLimit.String())
	}
	var ident *proxy.IdentityOptions
	if tokenFile != "" {
		ident = &proxy.IdentityOptions{TokenFile: tokenFile, TrustDomain: trustDomain, TTL: certTTL}
	}
	return proxy.Run(ctx, proxy.Options{
		Identity:         ident,
		XDSAddress:       xdsAddress,
		Node:             node,
		AdminAddress:     adminAddress,
		MetricsAddress:   metricsAddress,
		AccessLogPath:    accessLog,
		DropMetricLabels: dropLabels,
		Tracing:          tracing,
		Logger:           log.With("proxy", node.ID),
		Pprof:            pprof,
		OnAdminListening: func(addr string) {
			log.Info("admin listening", "address", addr)
		},
	})
}

// ReadNode decodes the proxy's identity from --node-json or the --node-file it names.
func ReadNode(nodeJSON, nodeFile string) (*model.Proxy, error) {
	raw := []byte(nodeJSON)
	if nodeFile != "" {
		var err error
		if raw, err = os.ReadFile(nodeFile); err != nil {
			return nil, fmt.Errorf("--node-file: %w", err)
		}
	}
	if len(raw) == 0 {
		return nil, errors.New("one of --node-json or --node-file is required")
	}
	var node model.Proxy
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&node); err != nil {
		return nil, fmt.Errorf("node JSON: %w", err)
	}
	if node.ID == "" {
		return nil, errors.New("node JSON: id is required")
	}
	return &node, nil
}
