package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the control plane's own, named as Istio's istiod names them so existing
// dashboards read them (pilot_*), in a registry of the server's own.
type metrics struct {
	registry      *prometheus.Registry
	pushes        *prometheus.CounterVec
	rejects       *prometheus.CounterVec
	internalErrs  prometheus.Counter
	convergence   prometheus.Histogram
	configRejects prometheus.Counter
	configAccepts prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "xDS responses sent, by type (cds, eds, lds, rds).",
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "xDS responses rejected (NACKed) by proxies, by type.",
		}, []string{"type"}),
		internalErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_xds_internal_errors", Help: "Translation or snapshot consistency errors; the previous snapshot keeps serving.",
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Seconds from a configuration change to every proxy's snapshot being set (push latency, debounce included).",
			Buckets: []float64{.01, .05, .1, .2, .5, 1, 3, 5, 10, 20, 30},
		}),
		configRejects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_config_rejected_total", Help: "Configuration edits rejected as invalid (the previous config keeps serving).",
		}),
		configAccepts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_config_accepted_total", Help: "Configuration changes accepted.",
		}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pilot_xds", Help: "Proxies connected to this control plane.",
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, node := range s.nodes {
			if node.streams > 0 {
				n++
			}
		}
		return float64(n)
	})
	m.registry.MustRegister(m.pushes, m.rejects, m.internalErrs, m.convergence, m.configRejects, m.configAccepts, connected,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// MetricsHandler serves the control plane's metrics in the Prometheus text format
// (mount it at /metrics on the monitoring port, Istio's :15014).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
}

// ConfigAccepted and ConfigRejected count configuration loads, for the runtime that
// reads the files.
func (s *Server) ConfigAccepted() { s.metrics.configAccepts.Inc() }

// ConfigRejected counts one rejected configuration edit.
func (s *Server) ConfigRejected() { s.metrics.configRejects.Inc() }

func (m *metrics) observeConvergence(since time.Time) {
	if !since.IsZero() {
		m.convergence.Observe(time.Since(since).Seconds())
	}
}
