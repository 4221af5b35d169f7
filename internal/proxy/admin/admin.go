// Package admin serves the proxy's admin HTTP endpoints: /ready, /healthz,
// /config_dump, /stats/prometheus and, when enabled, /debug/pprof/.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// Options configure the admin server.
type Options struct {
	Address     string
	Logger      *slog.Logger
	Ready       func() bool
	Status      func() *xdsclient.Status
	Metrics     *stats.Metrics
	OnListening func(addr string)
	// Pprof serves /debug/pprof/ (the --pprof flag of skein proxy).
	Pprof bool
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
	srv := &http.Server{Handler: Handler(opts), ReadHeaderTimeout: 10 * time.Second}
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
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{}))
	if opts.Pprof {
		registerPprof(mux)
	}
	return mux
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
