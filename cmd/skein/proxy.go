package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/proxy/tracing"
)

// tracingFlags are the tracing flags shared by `skein proxy` and `skein up`.
type tracingFlags struct {
	exporter, endpoint string
	sampling           float64
}

func (t *tracingFlags) register(f *pflag.FlagSet) {
	f.StringVar(&t.exporter, "tracing-exporter", "", "export a span per request: otlp-grpc, otlp-http or zipkin (empty: no tracing)")
	f.StringVar(&t.endpoint, "tracing-endpoint", "", "collector: host:port for OTLP, http://host:9411/api/v2/spans for zipkin")
	f.Float64Var(&t.sampling, "tracing-sampling", 100, "percentage of new traces sampled (0-100); a sampled parent is always followed")
}

// options returns nil when tracing is off.
func (t *tracingFlags) options() (*tracing.Options, error) {
	if t.exporter == "" && t.endpoint == "" {
		return nil, nil
	}
	o := &tracing.Options{Exporter: t.exporter, Endpoint: t.endpoint, SamplingPercent: t.sampling}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("--tracing-*: %w", err)
	}
	return o, nil
}

// args renders the flags for a child skein proxy.
func (t *tracingFlags) args() []string {
	if t.exporter == "" && t.endpoint == "" {
		return nil
	}
	return []string{"--tracing-exporter", t.exporter, "--tracing-endpoint", t.endpoint, "--tracing-sampling", fmt.Sprint(t.sampling)}
}

func newProxyCmd() *cobra.Command {
	var (
		xdsAddress, nodeJSON, nodeFile, adminAddress, logLevel string
		metricsAddress, accessLog                              string
		dropLabels                                             []string
		tr                                                     tracingFlags
		tokenFile, trustDomain                                 string
		certTTL                                                time.Duration
		pprof                                                  bool
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the skein proxy (sidecar or gateway), configured only by xDS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			node, err := readNode(nodeJSON, nodeFile)
			if err != nil {
				return err
			}
			tracing, err := tr.options()
			if err != nil {
				return err
			}
			var ident *proxy.IdentityOptions
			if tokenFile != "" {
				ident = &proxy.IdentityOptions{TokenFile: tokenFile, TrustDomain: trustDomain, TTL: certTTL}
			}
			return proxy.Run(cmd.Context(), proxy.Options{
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
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of the control plane's ADS server")
	f.StringVar(&nodeJSON, "node-json", "", "the proxy's identity as model.Proxy JSON")
	f.StringVar(&nodeFile, "node-file", "", "file holding the proxy's identity as model.Proxy JSON")
	f.StringVar(&adminAddress, "admin-address", "127.0.0.1:15000", "address of the admin server (/ready, /config_dump, /stats/prometheus)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&metricsAddress, "metrics-address", "", "also serve /stats/prometheus on this address (Istio's :15020)")
	f.StringVar(&accessLog, "access-log", "", "write a JSON access log line per request/connection to this file (- for stdout)")
	f.StringSliceVar(&dropLabels, "metrics-drop-labels", nil, "standard istio_* metric labels to remove (cardinality), e.g. source_principal,destination_principal")
	tr.register(f)
	f.StringVar(&tokenFile, "ca-token-file", "", "file holding the bootstrap credential for the workload certificate (CSR to the control plane's CA); without it the proxy has no mTLS identity")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of the proxy's SPIFFE ID")
	f.DurationVar(&certTTL, "cert-ttl", 0, "certificate lifetime to request (0: the CA's default)")
	f.BoolVar(&pprof, "pprof", os.Getenv("SKEIN_PROXY_PPROF") != "", "serve Go's profiler at /debug/pprof/ on the admin address (default on when $SKEIN_PROXY_PPROF is set, which sidecars started by skein up inherit)")
	cmd.MarkFlagsMutuallyExclusive("node-json", "node-file")
	return cmd
}

func readNode(nodeJSON, nodeFile string) (*model.Proxy, error) {
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
