package model

import (
	"strings"
	"time"
)

// LoadBalancer names a simple load-balancing algorithm.
type LoadBalancer string

const (
	LBDefault      LoadBalancer = "" // Istio's default: LEAST_REQUEST
	LBRoundRobin   LoadBalancer = "ROUND_ROBIN"
	LBLeastRequest LoadBalancer = "LEAST_REQUEST"
	LBRandom       LoadBalancer = "RANDOM"
)

// LoadBalancerSettings is trafficPolicy.loadBalancer. Simple and ConsistentHash are
// exclusive (Istio's oneof); Locality and Warmup refine either.
type LoadBalancerSettings struct {
	Simple         LoadBalancer    `json:"simple,omitempty"`
	ConsistentHash *ConsistentHash `json:"consistentHash,omitempty"`
	Locality       *LocalityLB     `json:"locality,omitempty"`
	Warmup         *Warmup         `json:"warmup,omitempty"`
	// PeakEWMA is the skein extension (annotation lb.skein.dev/algorithm: peak-ewma):
	// power of two choices weighing each endpoint's peak-sensitive moving average of
	// latency by its requests in flight, as Linkerd balances. Only with LEAST_REQUEST.
	PeakEWMA *PeakEWMA `json:"peakEWMA,omitempty"`
}

// ConsistentHash is loadBalancer.consistentHash: exactly one hash key, and the ring.
type ConsistentHash struct {
	HTTPHeaderName         string      `json:"httpHeaderName,omitempty"`
	HTTPCookie             *HashCookie `json:"httpCookie,omitempty"`
	UseSourceIP            bool        `json:"useSourceIp,omitempty"`
	HTTPQueryParameterName string      `json:"httpQueryParameterName,omitempty"`
	// Maglev selects Envoy's Maglev table (TableSize entries, 0: Envoy's 65537); else
	// a ring hash of at least MinimumRingSize entries (0: Envoy's 1024).
	Maglev          bool   `json:"maglev,omitempty"`
	TableSize       uint64 `json:"tableSize,omitempty"`
	MinimumRingSize uint64 `json:"minimumRingSize,omitempty"`
}

// HashCookie hashes on a cookie; with a TTL the proxy sets the cookie when absent.
type HashCookie struct {
	Name string        `json:"name"`
	Path string        `json:"path,omitempty"`
	TTL  time.Duration `json:"ttl,omitempty"`
	// HasTTL: ttl was given (a zero TTL makes a session cookie).
	HasTTL bool `json:"hasTTL,omitempty"`
}

// LocalityLB is loadBalancer.localityLbSetting.
type LocalityLB struct {
	// Disabled is enabled: false.
	Disabled         bool                 `json:"disabled,omitempty"`
	Distribute       []LocalityDistribute `json:"distribute,omitempty"`
	Failover         []LocalityFailover   `json:"failover,omitempty"`
	FailoverPriority []string             `json:"failoverPriority,omitempty"`
}

// LocalityDistribute sends the traffic of proxies in From to localities by weight.
// Localities are "region/zone/subzone" patterns where a trailing part may be "*".
type LocalityDistribute struct {
	From string            `json:"from"`
	To   map[string]uint32 `json:"to"`
}

// LocalityFailover names the region that takes over when From has no healthy endpoint.
type LocalityFailover struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Warmup is loadBalancer.warmup (or warmupDurationSecs): Envoy's slow start.
type Warmup struct {
	Duration time.Duration `json:"duration"`
	// MinimumPercent is the weight a new endpoint starts with (Envoy's default 10).
	MinimumPercent float64 `json:"minimumPercent,omitempty"`
	// Aggression shapes the ramp (1: linear, Envoy's default).
	Aggression float64 `json:"aggression,omitempty"`
}

// PeakEWMA tunes the skein peak-EWMA balancer.
type PeakEWMA struct {
	// Decay is the time constant of the moving average (Linkerd's 10s when 0).
	Decay time.Duration `json:"decay,omitempty"`
	// DefaultRTT is the latency assumed for an endpoint never measured (30ms when 0).
	DefaultRTT time.Duration `json:"defaultRTT,omitempty"`
}

// ConnectionPool is trafficPolicy.connectionPool.
type ConnectionPool struct {
	TCP  *TCPPool  `json:"tcp,omitempty"`
	HTTP *HTTPPool `json:"http,omitempty"`
}

// TCPPool is connectionPool.tcp. Zero values mean "not set".
type TCPPool struct {
	MaxConnections int32         `json:"maxConnections,omitempty"`
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty"`
	KeepAlive      *TCPKeepalive `json:"tcpKeepalive,omitempty"`
}

// TCPKeepalive is connectionPool.tcp.tcpKeepalive.
type TCPKeepalive struct {
	Probes   uint32        `json:"probes,omitempty"`
	Time     time.Duration `json:"time,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
}

// HTTPPool is connectionPool.http. Zero values mean "not set".
type HTTPPool struct {
	HTTP1MaxPendingRequests  int32         `json:"http1MaxPendingRequests,omitempty"`
	HTTP2MaxRequests         int32         `json:"http2MaxRequests,omitempty"`
	MaxRequestsPerConnection int32         `json:"maxRequestsPerConnection,omitempty"`
	MaxRetries               int32         `json:"maxRetries,omitempty"`
	IdleTimeout              time.Duration `json:"idleTimeout,omitempty"`
	// H2Upgrade is h2UpgradePolicy UPGRADE: HTTP/1.1 ports are spoken to in HTTP/2.
	H2Upgrade bool `json:"h2Upgrade,omitempty"`
}

// OutlierDetection is trafficPolicy.outlierDetection. Nil counters mean "not set"
// (Envoy's defaults apply: 5 consecutive 5xx enforced, gateway errors not enforced).
type OutlierDetection struct {
	Consecutive5xxErrors     *uint32       `json:"consecutive5xxErrors,omitempty"`
	ConsecutiveGatewayErrors *uint32       `json:"consecutiveGatewayErrors,omitempty"`
	Interval                 time.Duration `json:"interval,omitempty"`
	BaseEjectionTime         time.Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent       int32         `json:"maxEjectionPercent,omitempty"`
	MinHealthPercent         int32         `json:"minHealthPercent,omitempty"`
}

// EffectiveTrafficPolicy is the policy of one cluster (a port of the rule's host, and
// a subset or "" for none) with Istio's merge (MergeTrafficPolicy): the top level's
// entry for the port in portLevelSettings replaces its loadBalancer, connectionPool,
// outlierDetection and tls — all four, as Istio documents: what the entry omits goes
// to the defaults, it is not inherited; then each of those a subset sets replaces the
// result's; then the subset's own entry for the port replaces all four again. nil when
// nothing applies. The result has no PortLevel.
func (dr *DestinationRule) EffectiveTrafficPolicy(subset string, port int) *TrafficPolicy {
	if dr == nil {
		return nil
	}
	merged := atPort(dr.TrafficPolicy, port)
	if subset == "" {
		return merged
	}
	for i := range dr.Subsets {
		if dr.Subsets[i].Name != subset || dr.Subsets[i].TrafficPolicy == nil {
			continue
		}
		sub := dr.Subsets[i].TrafficPolicy
		out := TrafficPolicy{}
		if merged != nil {
			out = *merged
		}
		if sub.LoadBalancer != nil {
			out.LoadBalancer = sub.LoadBalancer
		}
		if sub.ConnectionPool != nil {
			out.ConnectionPool = sub.ConnectionPool
		}
		if sub.OutlierDetection != nil {
			out.OutlierDetection = sub.OutlierDetection
		}
		if sub.TLS != nil {
			out.TLS = sub.TLS
		}
		if pl := portEntry(sub, port); pl != nil {
			out = TrafficPolicy{LoadBalancer: pl.LoadBalancer, ConnectionPool: pl.ConnectionPool, OutlierDetection: pl.OutlierDetection, TLS: pl.TLS}
		}
		merged = &out
	}
	return merged
}

// atPort is a policy as it applies to one port: its portLevelSettings entry for the
// port, if any, in place of its four components.
func atPort(tp *TrafficPolicy, port int) *TrafficPolicy {
	if tp == nil {
		return nil
	}
	if pl := portEntry(tp, port); pl != nil {
		return &TrafficPolicy{LoadBalancer: pl.LoadBalancer, ConnectionPool: pl.ConnectionPool, OutlierDetection: pl.OutlierDetection, TLS: pl.TLS}
	}
	return &TrafficPolicy{LoadBalancer: tp.LoadBalancer, ConnectionPool: tp.ConnectionPool, OutlierDetection: tp.OutlierDetection, TLS: tp.TLS}
}

func portEntry(tp *TrafficPolicy, port int) *PortTrafficPolicy {
	for i := range tp.PortLevel {
		if tp.PortLevel[i].Port == port {
			return &tp.PortLevel[i]
		}
	}
	return nil
}

// Locality labels, read from a Workload's labels as Istio reads them from a node and pod.
const (
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubzone = "topology.istio.io/subzone"
)

// Locality is where an endpoint or a proxy runs.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Subzone string `json:"subzone,omitempty"`
}

// LocalityOf reads the topology labels.
func LocalityOf(labels map[string]string) Locality {
	return Locality{Region: labels[LabelRegion], Zone: labels[LabelZone], Subzone: labels[LabelSubzone]}
}

// IsZero reports an unknown locality.
func (l Locality) IsZero() bool { return l == Locality{} }

// String is Istio's "region/zone/subzone" form.
func (l Locality) String() string {
	if l.IsZero() {
		return ""
	}
	return l.Region + "/" + l.Zone + "/" + l.Subzone
}

// MatchesPattern reports whether l is in an Istio locality pattern: "region",
// "region/zone", "region/zone/subzone", where any part may be "*" (matching all below).
func (l Locality) MatchesPattern(pattern string) bool {
	parts := strings.Split(pattern, "/")
	have := []string{l.Region, l.Zone, l.Subzone}
	for i, p := range parts {
		if i >= 3 {
			return false
		}
		if p == "*" {
			return true
		}
		if p != have[i] {
			return false
		}
	}
	return true
}

// Locality of an endpoint, from its workload's topology labels.
func (e Endpoint) Locality() Locality { return LocalityOf(e.Labels) }
