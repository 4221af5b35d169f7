package stats

import "github.com/prometheus/client_golang/prometheus"

// tlsMetrics count what the secure listeners refuse.
type tlsMetrics struct {
	refused *prometheus.CounterVec
}

func (t *tlsMetrics) register(r *prometheus.Registry) {
	t.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_downstream_connections_refused_total",
		Help: "Downstream connections closed before their filters ran, by listener and reason (no_filter_chain: e.g. plaintext to a STRICT mTLS port; tls_handshake; tls_config).",
	}, []string{"listener", "reason"})
	r.MustRegister(t.refused)
}

// ConnectionRefused counts a downstream connection closed by a listener.
func (m *Metrics) ConnectionRefused(listener, reason string) {
	m.tls.refused.WithLabelValues(listener, reason).Inc()
}
