// Package dashboard serves skein's web UI: the built front end (ui/, built by Vite and
// embedded from dist/) and a small JSON API over the running mesh. The numbers come
// from internal/observe, the same code as `skein stat` and `skein tap`: a poller
// scrapes every sidecar every Interval and keeps a short history, and every view is
// the difference between two of those scrapes.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/observe"
	"skein.dev/skein/internal/proxy/streaminfo"
)

//go:embed all:dist
var dist embed.FS

// Source is the mesh the dashboard shows.
type Source interface {
	Status(ctx context.Context) (api.Status, error)
	// Config is the mesh's current configuration (routes and policies per service).
	Config(ctx context.Context) (*model.Mesh, error)
}

// Options configure a dashboard.
type Options struct {
	Source Source
	Logger *slog.Logger
	// Interval between scrapes (default 2 s); Window is the span a view covers
	// (default 10 s); History is how many points the charts keep (default 90).
	Interval, Window time.Duration
	History          int
}

// Server is a running dashboard.
type Server struct {
	opts   Options
	client *http.Client

	mu      sync.Mutex
	snaps   []*observe.Snapshot
	history []point
	targets []observe.Target
}

// point is one chart sample: the stats of every service over the window ending At.
type point struct {
	At       time.Time                `json:"at"`
	Services map[string]observe.Stats `json:"services"`
}

// Serve runs the dashboard on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Window <= 0 {
		opts.Window = 10 * time.Second
	}
	if opts.History <= 0 {
		opts.History = 90
	}
	s := &Server{opts: opts, client: &http.Client{Timeout: 5 * time.Second}}
	go s.poll(ctx)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) poll(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		st, err := s.opts.Source.Status(ctx)
		if err == nil {
			targets := observe.Targets(st)
			snap := observe.Scrape(ctx, s.client, targets)
			s.mu.Lock()
			s.targets = targets
			s.snaps = append(s.snaps, snap)
			keep := int(s.opts.Window/s.opts.Interval) + 2
			if len(s.snaps) > keep {
				s.snaps = s.snaps[len(s.snaps)-keep:]
			}
			if res, ok := s.resultLocked(); ok {
				p := point{At: snap.At, Services: map[string]observe.Stats{}}
				for _, r := range res.Services {
					p.Services[r.Name] = r.Stats
				}
				s.history = append(s.history, p)
				if len(s.history) > s.opts.History {
					s.history = s.history[len(s.history)-s.opts.History:]
				}
			}
			s.mu.Unlock()
		} else if ctx.Err() == nil {
			s.opts.Logger.Warn("dashboard: mesh status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// resultLocked diffs the newest snapshot against the one about Window older.
func (s *Server) resultLocked() (observe.Result, bool) {
	n := len(s.snaps)
	if n < 2 {
		return observe.Result{}, false
	}
	last := s.snaps[n-1]
	first := s.snaps[0]
	for _, sn := range s.snaps[:n-1] {
		if last.At.Sub(sn.At) >= s.opts.Window-s.opts.Interval/2 {
			first = sn
		}
	}
	return observe.Diff(first, last), true
}

// Handler serves the UI and its API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(dist, "dist")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		res, ok := s.resultLocked()
		s.mu.Unlock()
		if !ok {
			http.Error(w, "collecting: the first numbers come after two scrapes", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("GET /api/history", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := append([]point(nil), s.history...)
		s.mu.Unlock()
		writeJSON(w, h)
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.opts.Source.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /api/service", s.serveService)
	mux.HandleFunc("GET /api/tap", s.serveTap)
	return mux
}

// ServiceView is what applies to one service: its ports, the workloads behind it, and
// the VirtualServices and DestinationRules naming it.
type ServiceView struct {
	Host             string                   `json:"host"`
	Service          *model.Service           `json:"service,omitempty"`
	Workloads        []string                 `json:"workloads"`
	VirtualServices  []*model.VirtualService  `json:"virtualServices"`
	DestinationRules []*model.DestinationRule `json:"destinationRules"`
	Policies         []string                 `json:"policies"`
}

func (s *Server) serveService(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Query().Get("host")
	cfg, err := s.opts.Source.Config(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	v := ServiceView{Host: host, Workloads: []string{}, VirtualServices: []*model.VirtualService{}, DestinationRules: []*model.DestinationRule{},
		Policies: []string{"no authorization policies: every caller is allowed (no policy engine yet)"}}
	v.Service = cfg.ServiceByHost(host)
	if v.Service != nil {
		for _, wl := range cfg.Workloads {
			if model.Selects(v.Service.Selector, wl.Labels) && wl.Namespace == v.Service.Namespace {
				v.Workloads = append(v.Workloads, wl.Name)
			}
		}
	}
	for _, vs := range cfg.VirtualServices {
		for _, h := range vs.Hosts {
			if h == host {
				v.VirtualServices = append(v.VirtualServices, vs)
				break
			}
		}
	}
	if dr := cfg.DestinationRuleFor(host); dr != nil {
		v.DestinationRules = append(v.DestinationRules, dr)
	}
	writeJSON(w, v)
}

// serveTap streams tapped requests of one workload (or all) as NDJSON.
func (s *Server) serveTap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	all := append([]observe.Target(nil), s.targets...)
	s.mu.Unlock()
	var targets []observe.Target
	wl := q.Get("workload")
	for _, t := range all {
		if wl == "" || t.Workload == wl || t.Workload+"."+t.Namespace == wl {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		http.Error(w, "no sidecar to tap", http.StatusNotFound)
		return
	}
	f := observe.TapFilter{Path: q.Get("path"), Method: q.Get("method"), Status: q.Get("status"), Direction: q.Get("direction")}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	events := make(chan streaminfo.Record, 64)
	go func() { _ = observe.Tap(ctx, http.DefaultClient, targets, f, events); close(events) }()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	for rec := range events {
		if enc.Encode(rec) != nil || rc.Flush() != nil {
			cancel()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// URL renders a listener address as the dashboard's URL.
func URL(addr string) string {
	if strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") {
		_, port, _ := net.SplitHostPort(addr)
		addr = "127.0.0.1:" + port
	}
	return "http://" + addr + "/"
}
