// Package stats holds the proxy's Prometheus metrics in a registry of its own (never the
// global one), with the per-(cluster, route, code) children cached so the request path
// does not hash label values on every request.
package stats

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the proxy's metric set.
type Metrics struct {
	Registry *prometheus.Registry

	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	tcpConns   *prometheus.CounterVec
	tcpBytes   *prometheus.CounterVec
	xdsUpdates *prometheus.CounterVec

	requestChildren sync.Map // requestKey -> *requestChild

	tls tlsMetrics // tls.go
}

type requestKey struct {
	cluster, route string
	code           int
}

type requestChild struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New registers the metrics in a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_requests_total", Help: "HTTP requests handled, by upstream cluster, route and response code.",
		}, []string{"cluster", "route", "response_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skein_request_duration_seconds", Help: "HTTP request duration until the response ends.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"cluster", "route", "response_code"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_tcp_connections_total", Help: "TCP proxy connections, by upstream cluster.",
		}, []string{"cluster"}),
		tcpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_tcp_bytes_total", Help: "TCP proxy bytes, by upstream cluster and direction (sent upstream, received from upstream).",
		}, []string{"cluster", "direction"}),
		xdsUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_xds_updates_total", Help: "xDS responses, by type and result (ack, nack).",
		}, []string{"type", "result"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.tcpConns, m.tcpBytes, m.xdsUpdates,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.tls.register(m.Registry)
	return m
}

// ObserveRequest records one finished HTTP request. cluster is "" when none was chosen.
func (m *Metrics) ObserveRequest(cluster, route string, code int, d time.Duration) {
	key := requestKey{cluster: cluster, route: route, code: code}
	v, ok := m.requestChildren.Load(key)
	if !ok {
		labels := []string{cluster, route, strconv.Itoa(code)}
		v, _ = m.requestChildren.LoadOrStore(key, &requestChild{
			count:    m.requests.WithLabelValues(labels...),
			duration: m.duration.WithLabelValues(labels...),
		})
	}
	c := v.(*requestChild)
	c.count.Inc()
	c.duration.Observe(d.Seconds())
}

// TCPConnection counts one proxied TCP connection.
func (m *Metrics) TCPConnection(cluster string) { m.tcpConns.WithLabelValues(cluster).Inc() }

// TCPBytes adds bytes sent upstream and received from upstream.
func (m *Metrics) TCPBytes(cluster string, sent, received int64) {
	m.tcpBytes.WithLabelValues(cluster, "sent").Add(float64(sent))
	m.tcpBytes.WithLabelValues(cluster, "received").Add(float64(received))
}

// XDSUpdate counts one xDS response by type ("cds", "eds", "lds", "rds") and result.
func (m *Metrics) XDSUpdate(typ string, accepted bool) {
	result := "nack"
	if accepted {
		result = "ack"
	}
	m.xdsUpdates.WithLabelValues(typ, result).Inc()
}
