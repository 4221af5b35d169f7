// Package telemetry turns finished requests and connections (streaminfo.Info) into the
// proxy's observable output: Istio-standard Prometheus metrics, and the hand-off to
// the access log and tap sinks. It also implements skein's metadata exchange, which
// tells each side of a mesh call who the other workload is (see PeerHeader).
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// Sink receives finished requests and connections. Log is called on the request's
// goroutine: it must be cheap and must not block (queue the work, drop when full).
// The Info must not be modified.
type Sink interface {
	Log(*streaminfo.Info)
}

// Options configure a Hub.
type Options struct {
	Node     *model.Proxy
	Registry prometheus.Registerer
	Metrics  MetricsOptions
	Sinks    []Sink
}

// Hub is a proxy's telemetry: its own identity, the peer and service caches, the
// metrics and the sinks. It is safe for concurrent use.
type Hub struct {
	Local       *streaminfo.Peer
	LocalHeader string
	Peers       Peers
	Services    Services
	Metrics     *Metrics
	sinks       []Sink
}

// New builds a Hub and registers its metrics.
func New(opts Options) (*Hub, error) {
	local := LocalPeer(opts.Node)
	h := &Hub{Local: local, LocalHeader: EncodePeer(local), sinks: opts.Sinks}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	var err error
	if h.Metrics, err = NewMetrics(opts.Registry, opts.Metrics); err != nil {
		return nil, err
	}
	return h, nil
}

// AddSink adds a sink; call before serving traffic.
func (h *Hub) AddSink(s Sink) { h.sinks = append(h.sinks, s) }

// FinishHTTP records a finished HTTP request.
func (h *Hub) FinishHTTP(info *streaminfo.Info) {
	h.Metrics.ObserveHTTP(info, h.Local)
	for _, s := range h.sinks {
		s.Log(info)
	}
}

// OpenTCP records an opened TCP connection.
func (h *Hub) OpenTCP(info *streaminfo.Info) { h.Metrics.OpenTCP(info, h.Local) }

// CloseTCP records a closed TCP connection.
func (h *Hub) CloseTCP(info *streaminfo.Info) {
	h.Metrics.CloseTCP(info, h.Local)
	for _, s := range h.sinks {
		s.Log(info)
	}
}
