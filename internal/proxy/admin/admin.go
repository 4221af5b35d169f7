// Package admin serves the proxy's admin HTTP endpoints: /ready, /healthz,
// /config_dump, /stats/prometheus, /tap (live requests), POST /explain (the
// decision trace of a request on the compiled config) and, when enabled, /debug/pprof/.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"skein.dev/skein/internal/proxy/identity"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// Options configure the admin server.
type Options struct {
	Address string
	Logger  *slog.Logger
	Ready   func() bool
	Status  func() *xdsclient.Status
	Metrics *stats.Metrics
	// Tap serves GET /tap; nil leaves it out.
	Tap http.Handler
	// Explain answers POST /explain; nil leaves it out.
	Explain     func(ExplainRequest) (any, error)
	OnListening func(addr string)
	// Certs, optional, serves /certs.
	Certs func() Certs
	// Pprof serves /debug/pprof/ (the --pprof flag of skein proxy).
	Pprof bool
}

// Certs is the JSON shape of /certs: the workload certificate (SDS "default") and the
// SDS trust bundles held.
type Certs struct {
	Workload      *identity.Status `json:"workload,omitempty"`
	Bundles       []string         `json:"bundles,omitempty"`
	BundleVersion string           `json:"bundleVersion,omitempty"`
}

// ExplainRequest is the body of POST /explain: a request as an app would send it.
type ExplainRequest struct {
	// Listener names the listener; empty picks the app's outbound HTTP listener.
	Listener string              `json:"listener,omitempty"`
	Method   string              `json:"method"`
	URL      string              `json:"url"`
	Headers  map[string][]string `json:"headers,omitempty"`
	// Destination (ip:port), when set without Listener, explains the request as a
	// connection to that address arriving at this proxy (an inbound explain: the
	// endpoint a caller's sidecar picked). TLS says it is mutual TLS from
	// SourcePrincipal (a SPIFFE ID); SourceAddress is the caller's ip.
	Destination     string `json:"destination,omitempty"`
	TLS             bool   `json:"tls,omitempty"`
	SourcePrincipal string `json:"sourcePrincipal,omitempty"`
	SourceAddress   string `json:"sourceAddress,omitempty"`
	// parsed is set by the handler.
	parsed *http.Request
}

// Request is the request to explain.
func (e ExplainRequest) Request() *http.Request { return e.parsed }

// ParseExplain turns an explain request into the *http.Request the proxy matches.
func ParseExplain(e ExplainRequest) (*http.Request, error) {
	if err := parseExplain(&e); err != nil {
		return nil, err
	}
	return e.parsed, nil
}

func parseExplain(e *ExplainRequest) error {
	if e.Method == "" {
		e.Method = http.MethodGet
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q: want an absolute URL such as http://catalog:8080/items", e.URL)
	}
	r := &http.Request{Method: strings.ToUpper(e.Method), URL: u, Host: u.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, vs := range e.Headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	if h := r.Header.Get("Host"); h != "" {
		r.Host = h
		r.Header.Del("Host")
	}
	r.URL.Host, r.URL.Scheme = "", ""
	e.parsed = r
	return nil
}

// ConfigDump is the JSON shape of /config_dump.
type ConfigDump struct {
	Types map[string]TypeDump `json:"types"`
}

// TypeDump is one resource type in /config_dump.
type TypeDump struct {
	Version   string                     `json:"version"`
	Names     []string                   `json:"names,omitempty"`
	LastNACK  string                     `json:"last_nack,omitempty"`
	Resources map[string]json.RawMessage `json:"resources"`
}

// Serve runs the admin server until ctx is done.
func Serve(ctx context.Context, opts Options) error {
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return err
	}
	if opts.OnListening != nil {
		opts.OnListening(ln.Addr().String())
	}
	// Requests end with ctx, so open /tap streams do not hold up the shutdown.
	srv := &http.Server{Handler: Handler(opts), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler returns the admin mux.
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready == nil || !opts.Ready() {
			http.Error(w, "not ready: no complete xDS configuration applied yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		dump, err := configDump(opts.Status())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(dump)
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
		var c Certs
		if opts.Certs != nil {
			c = opts.Certs()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	})
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(opts.Metrics.Registry, uncompressed))
	if opts.Tap != nil {
		mux.Handle("GET /tap", opts.Tap)
	}
	if opts.Explain != nil {
		mux.HandleFunc("POST /explain", func(w http.ResponseWriter, r *http.Request) {
			var req ExplainRequest
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				http.Error(w, "explain request: "+err.Error(), http.StatusBadRequest)
				return
			}
			if err := parseExplain(&req); err != nil {
				http.Error(w, "explain request: "+err.Error(), http.StatusBadRequest)
				return
			}
			out, err := opts.Explain(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnprocessableEntity)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(out)
		})
	}
	if opts.Pprof {
		registerPprof(mux)
	}
	return mux
}

// ServeMetrics serves only GET /stats/prometheus on address until ctx is done (the
// counterpart of Istio's :15020 port).
func ServeMetrics(ctx context.Context, address string, m *stats.Metrics) error {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(m.Registry, uncompressed))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func configDump(s *xdsclient.Status) (*ConfigDump, error) {
	dump := &ConfigDump{Types: map[string]TypeDump{}}
	if s == nil {
		return dump, nil
	}
	for typ, ts := range s.Types {
		td := TypeDump{Version: ts.Version, Names: ts.Names, LastNACK: ts.LastNACK, Resources: map[string]json.RawMessage{}}
		for name, pb := range ts.Resources {
			b, err := protojson.Marshal(pb)
			if err != nil {
				return nil, err
			}
			td.Resources[name] = b
		}
		dump.Types[typ] = td
	}
	return dump, nil
}

// uncompressed serves metrics as plain text even to clients that accept gzip (skein
// up's dashboard scrapes every sidecar every 2 s, Prometheus does too): a gzip writer
// costs a sidecar ~0.8 MB of heap and CPU per scrape, for a page that crosses loopback
// or the pod network. Envoy's admin does not compress either.
var uncompressed = promhttp.HandlerOpts{DisableCompression: true}
