package telemetry

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/proxy/streaminfo"
)

// Istio's standard metric labels, in Istio's order.
var standardLabels = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version",
	"destination_service", "destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// tcpExcluded are the standard labels TCP metrics do not carry (as in Istio).
var tcpExcluded = map[string]bool{"response_code": true, "grpc_response_status": true}

// Istio's default buckets.
var (
	DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	BytesBuckets    = []float64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}
)

// LabelNames returns the labels a metric family carries after dropping some.
func LabelNames(tcp bool, drop []string) []string {
	var out []string
	for _, l := range standardLabels {
		if (tcp && tcpExcluded[l]) || slices.Contains(drop, l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// ValidateDropLabels checks that every name is a standard label other than reporter
// (which every consumer needs to avoid double counting).
func ValidateDropLabels(drop []string) error {
	for _, d := range drop {
		if d == "reporter" || !slices.Contains(standardLabels, d) {
			return fmt.Errorf("cannot drop metric label %q: want one of the standard labels except reporter", d)
		}
	}
	return nil
}

// MetricsOptions configure Istio-standard metrics.
type MetricsOptions struct {
	// DropLabels are removed from every istio_* metric, to bound cardinality.
	DropLabels []string
	// Cluster is the value of source_cluster/destination_cluster (Istio: "Kubernetes").
	Cluster string
	// LocalPrincipal is this proxy's own SPIFFE ID (empty without mTLS): Istio reports
	// it as source_principal (source reporter) or destination_principal (destination
	// reporter) of a mutual TLS connection, from the local certificate's URI SAN.
	LocalPrincipal string
}

// Metrics are the Istio standard metrics of one proxy. Children are cached per label
// combination in a copy-on-write map, so the request path does one map lookup with a
// small comparable key and no allocation once a combination has been seen.
type Metrics struct {
	cluster        string
	localPrincipal string

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	requestBytes  *prometheus.HistogramVec
	responseBytes *prometheus.HistogramVec
	tcpSent       *prometheus.CounterVec
	tcpReceived   *prometheus.CounterVec
	tcpOpened     *prometheus.CounterVec
	tcpClosed     *prometheus.CounterVec

	httpKeep, tcpKeep []int // indexes into standardLabels kept per family

	mu       sync.Mutex
	http     atomic.Pointer[map[labelKey]*httpChild]
	tcp      atomic.Pointer[map[labelKey]*tcpChild]
	children atomic.Int64
}

type labelKey struct {
	reporter  streaminfo.Direction
	local     *streaminfo.Peer
	peer      *streaminfo.Peer
	principal string // the peer's, from mutual TLS
	// ownPrincipal is the proxy's own SPIFFE ID when the connection was mutual TLS.
	ownPrincipal string
	svc          *streaminfo.Service
	proto        streaminfo.Protocol
	code         int
	grpc         int
	flags        streaminfo.Flags
	security     streaminfo.SecurityPolicy
}

type httpChild struct {
	requests                      prometheus.Counter
	duration, reqBytes, respBytes prometheus.Observer
}

type tcpChild struct {
	sent, received, opened, closed prometheus.Counter
}

// NewMetrics registers the istio_* families in reg.
func NewMetrics(reg prometheus.Registerer, opts MetricsOptions) (*Metrics, error) {
	if err := ValidateDropLabels(opts.DropLabels); err != nil {
		return nil, err
	}
	if opts.Cluster == "" {
		opts.Cluster = "Kubernetes"
	}
	httpLabels, tcpLabels := LabelNames(false, opts.DropLabels), LabelNames(true, opts.DropLabels)
	m := &Metrics{cluster: opts.Cluster, localPrincipal: opts.LocalPrincipal}
	for i, l := range standardLabels {
		if slices.Contains(httpLabels, l) {
			m.httpKeep = append(m.httpKeep, i)
		}
		if slices.Contains(tcpLabels, l) {
			m.tcpKeep = append(m.tcpKeep, i)
		}
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests handled, by reporter, source, destination and outcome."}, httpLabels)
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Request duration in milliseconds.", Buckets: DurationBuckets}, httpLabels)
	m.requestBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_bytes", Help: "Request body sizes in bytes.", Buckets: BytesBuckets}, httpLabels)
	m.responseBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_response_bytes", Help: "Response body sizes in bytes.", Buckets: BytesBuckets}, httpLabels)
	m.tcpSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_sent_bytes_total", Help: "Bytes sent to the downstream during TCP connections."}, tcpLabels)
	m.tcpReceived = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_received_bytes_total", Help: "Bytes received from the downstream during TCP connections."}, tcpLabels)
	m.tcpOpened = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_connections_opened_total", Help: "TCP connections opened."}, tcpLabels)
	m.tcpClosed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_connections_closed_total", Help: "TCP connections closed."}, tcpLabels)
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.requestBytes, m.responseBytes, m.tcpSent, m.tcpReceived, m.tcpOpened, m.tcpClosed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveHTTP records one finished HTTP request.
func (m *Metrics) ObserveHTTP(info *streaminfo.Info, local *streaminfo.Peer) {
	key := m.key(info, local)
	key.code, key.grpc = info.ResponseCode, info.GRPCStatus
	c := m.httpChild(key)
	c.requests.Inc()
	c.duration.Observe(float64(info.Duration.Microseconds()) / 1000)
	c.reqBytes.Observe(float64(info.BytesReceived))
	c.respBytes.Observe(float64(info.BytesSent))
}

// OpenTCP counts an opened TCP connection; CloseTCP counts its end and bytes.
func (m *Metrics) OpenTCP(info *streaminfo.Info, local *streaminfo.Peer) {
	m.tcpChild(m.key(info, local)).opened.Inc()
}

// CloseTCP counts a closed TCP connection and its bytes, under the flags known at
// its end (a connection opened fine may end with UC or DC).
func (m *Metrics) CloseTCP(info *streaminfo.Info, local *streaminfo.Peer) {
	c := m.tcpChild(m.key(info, local))
	c.closed.Inc()
	c.sent.Add(float64(info.BytesSent))
	c.received.Add(float64(info.BytesReceived))
}

func (m *Metrics) key(info *streaminfo.Info, local *streaminfo.Peer) labelKey {
	k := labelKey{
		reporter: info.Direction, local: local, svc: info.Service, proto: info.Protocol,
		flags: info.Flags, security: info.Security,
	}
	if info.Direction == streaminfo.Inbound {
		k.peer, k.principal = info.DownstreamPeer, info.DownstreamPrincipal
		if info.Security == streaminfo.SecurityMutualTLS {
			k.ownPrincipal = m.localPrincipal
		}
	} else {
		k.peer, k.principal = info.UpstreamPeer, info.UpstreamPrincipal
		if info.UpstreamPrincipal != "" {
			k.ownPrincipal = m.localPrincipal
		}
		// Istio: the source reporter cannot know the policy the destination applied.
		k.security = streaminfo.SecurityUnknown
	}
	return k
}

// Children returns how many label combinations have been seen (for tests and limits).
func (m *Metrics) Children() int64 { return m.children.Load() }

func (m *Metrics) httpChild(k labelKey) *httpChild {
	if mp := m.http.Load(); mp != nil {
		if c, ok := (*mp)[k]; ok {
			return c
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.http.Load()
	if old != nil {
		if c, ok := (*old)[k]; ok {
			return c
		}
	}
	vals := m.values(k, m.httpKeep)
	c := &httpChild{
		requests:  m.requests.WithLabelValues(vals...),
		duration:  m.duration.WithLabelValues(vals...),
		reqBytes:  m.requestBytes.WithLabelValues(vals...),
		respBytes: m.responseBytes.WithLabelValues(vals...),
	}
	next := make(map[labelKey]*httpChild, lenOf(old)+1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[k] = c
	m.http.Store(&next)
	m.children.Add(1)
	return c
}

func (m *Metrics) tcpChild(k labelKey) *tcpChild {
	if mp := m.tcp.Load(); mp != nil {
		if c, ok := (*mp)[k]; ok {
			return c
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.tcp.Load()
	if old != nil {
		if c, ok := (*old)[k]; ok {
			return c
		}
	}
	vals := m.values(k, m.tcpKeep)
	c := &tcpChild{
		sent:     m.tcpSent.WithLabelValues(vals...),
		received: m.tcpReceived.WithLabelValues(vals...),
		opened:   m.tcpOpened.WithLabelValues(vals...),
		closed:   m.tcpClosed.WithLabelValues(vals...),
	}
	next := make(map[labelKey]*tcpChild, lenOf(old)+1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[k] = c
	m.tcp.Store(&next)
	m.children.Add(1)
	return c
}

func lenOf[V any](m *map[labelKey]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// values renders a key as label values, in standardLabels order, keeping only keep.
func (m *Metrics) values(k labelKey, keep []int) []string {
	src, dst := k.local, k.peer
	srcPrincipal, dstPrincipal := k.principal, k.ownPrincipal
	if k.reporter == streaminfo.Outbound {
		src, dst = k.local, k.peer
		srcPrincipal, dstPrincipal = k.ownPrincipal, k.principal
	} else {
		src, dst = k.peer, k.local
	}
	reporter := "source"
	if k.reporter == streaminfo.Inbound {
		reporter = "destination"
	}
	svcHost, svcName, svcNS := unknown, unknown, unknown
	if k.svc != nil {
		svcHost, svcName, svcNS = k.svc.Host, k.svc.Name, k.svc.Namespace
	}
	grpc := ""
	if k.grpc >= 0 {
		grpc = strconv.Itoa(k.grpc)
	}
	code := "0"
	if k.code > 0 {
		code = strconv.Itoa(k.code)
	}
	all := []string{
		reporter,
		workload(src), canonicalService(src), canonicalRevision(src),
		namespace(src), orUnknown(srcPrincipal), app(src), version(src), m.cluster,
		workload(dst), namespace(dst), orUnknown(dstPrincipal),
		app(dst), version(dst),
		svcHost, canonicalService(dst), canonicalRevision(dst),
		svcName, svcNS, m.cluster,
		k.proto.String(), code, grpc, k.flags.String(),
		k.security.String(),
	}
	out := make([]string, 0, len(keep))
	for _, i := range keep {
		out = append(out, all[i])
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

func workload(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	return orUnknown(p.Workload)
}

func namespace(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	return orUnknown(p.Namespace)
}

func app(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	return orUnknown(p.App)
}

func version(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	return orUnknown(p.Version)
}

// canonicalService is Istio's service.istio.io/canonical-name default: the app label,
// else the workload name.
func canonicalService(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	if p.App != "" {
		return p.App
	}
	return orUnknown(p.Workload)
}

// canonicalRevision defaults to the version label, else "latest" (as Istio).
func canonicalRevision(p *streaminfo.Peer) string {
	if p == nil {
		return unknown
	}
	if p.Version != "" {
		return p.Version
	}
	return "latest"
}
