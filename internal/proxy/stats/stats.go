// Package stats holds the proxy's own Prometheus registry (never the global one) and
// its xDS and process metrics. The Istio-standard traffic metrics are registered in
// the same registry by internal/proxy/telemetry.
package stats

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the proxy's metric set.
type Metrics struct {
	Registry *prometheus.Registry

	xdsUpdates *prometheus.CounterVec
	dnsQueries *prometheus.CounterVec

	tls tlsMetrics // tls.go
}

// New registers the metrics in a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		xdsUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_xds_updates_total", Help: "xDS responses, by type and result (ack, nack).",
		}, []string{"type", "result"}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_dns_queries_total", Help: "DNS queries answered by the sidecar's DNS proxy, by result (local, forwarded, nxdomain, error).",
		}, []string{"result"}),
	}
	m.Registry.MustRegister(m.xdsUpdates, m.dnsQueries,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), gcCPU())
	m.tls.register(m.Registry)
	return m
}

// XDSUpdate counts one xDS response by type ("cds", "eds", "lds", "rds") and result.
func (m *Metrics) XDSUpdate(typ string, accepted bool) {
	result := "nack"
	if accepted {
		result = "ack"
	}
	m.xdsUpdates.WithLabelValues(typ, result).Inc()
}

// DNSQuery counts one DNS query by result.
func (m *Metrics) DNSQuery(result string) { m.dnsQueries.WithLabelValues(result).Inc() }
