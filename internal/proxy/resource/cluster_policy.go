package resource

import (
	"errors"
	"fmt"
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Cluster traffic-policy fields the proxy accepts (docs/XDS.md, "Cluster policy").
func init() {
	allowedFields = append(allowedFields,
		"google.protobuf.UInt64Value.value",
		"google.protobuf.DoubleValue.value",
		"envoy.config.cluster.v3.Cluster.ring_hash_lb_config",
		"envoy.config.cluster.v3.Cluster.RingHashLbConfig.minimum_ring_size",
		"envoy.config.cluster.v3.Cluster.RingHashLbConfig.maximum_ring_size",
		"envoy.config.cluster.v3.Cluster.maglev_lb_config",
		"envoy.config.cluster.v3.Cluster.MaglevLbConfig.table_size",
		"envoy.config.cluster.v3.Cluster.round_robin_lb_config",
		"envoy.config.cluster.v3.Cluster.RoundRobinLbConfig.slow_start_config",
		"envoy.config.cluster.v3.Cluster.least_request_lb_config",
		"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig.slow_start_config",
		"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig.choice_count",
		"envoy.config.cluster.v3.Cluster.SlowStartConfig.slow_start_window",
		"envoy.config.cluster.v3.Cluster.SlowStartConfig.aggression",
		"envoy.config.cluster.v3.Cluster.SlowStartConfig.min_weight_percent",
		"envoy.config.core.v3.RuntimeDouble.default_value",
		"envoy.config.core.v3.RuntimeDouble.runtime_key",
		"envoy.type.v3.Percent.value",
		"envoy.config.cluster.v3.Cluster.common_lb_config",
		"envoy.config.cluster.v3.Cluster.CommonLbConfig.healthy_panic_threshold",
		"envoy.config.cluster.v3.Cluster.CommonLbConfig.locality_weighted_lb_config",
		"envoy.config.cluster.v3.Cluster.circuit_breakers",
		"envoy.config.cluster.v3.CircuitBreakers.thresholds",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.priority",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_connections",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_pending_requests",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_requests",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_retries",
		"envoy.config.cluster.v3.CircuitBreakers.Thresholds.track_remaining",
		"envoy.config.cluster.v3.Cluster.outlier_detection",
		"envoy.config.cluster.v3.OutlierDetection.consecutive_5xx",
		"envoy.config.cluster.v3.OutlierDetection.interval",
		"envoy.config.cluster.v3.OutlierDetection.base_ejection_time",
		"envoy.config.cluster.v3.OutlierDetection.max_ejection_percent",
		"envoy.config.cluster.v3.OutlierDetection.enforcing_consecutive_5xx",
		"envoy.config.cluster.v3.OutlierDetection.enforcing_success_rate",
		"envoy.config.cluster.v3.OutlierDetection.consecutive_gateway_failure",
		"envoy.config.cluster.v3.OutlierDetection.enforcing_consecutive_gateway_failure",
		"envoy.config.cluster.v3.OutlierDetection.max_ejection_time",
		"envoy.config.cluster.v3.Cluster.upstream_connection_options",
		"envoy.config.cluster.v3.UpstreamConnectionOptions.tcp_keepalive",
		"envoy.config.core.v3.TcpKeepalive.keepalive_probes",
		"envoy.config.core.v3.TcpKeepalive.keepalive_time",
		"envoy.config.core.v3.TcpKeepalive.keepalive_interval",
		"envoy.config.cluster.v3.Cluster.metadata",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.common_http_protocol_options",
		"envoy.config.core.v3.HttpProtocolOptions.idle_timeout",
		"envoy.config.core.v3.HttpProtocolOptions.max_requests_per_connection",
		"envoy.config.endpoint.v3.LocalityLbEndpoints.priority",
		"envoy.config.endpoint.v3.LocalityLbEndpoints.load_balancing_weight",
	)
}

// Envoy's defaults for a cluster without circuit_breakers, and for outlier detection.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
	defaultPanicThreshold     = 50
)

// SkeinLBMetadataKey is the cluster filter_metadata key of skein's load-balancing
// extension; its "algorithm" value "peak-ewma" refines LEAST_REQUEST.
const SkeinLBMetadataKey = "skein.dev/lb"

// Thresholds are a cluster's circuit-breaker limits (default priority).
type Thresholds struct {
	MaxConnections, MaxPendingRequests, MaxRequests, MaxRetries uint32
}

// DefaultThresholds are Envoy's limits for a cluster without circuit_breakers.
var DefaultThresholds = Thresholds{DefaultMaxConnections, DefaultMaxPendingRequests, DefaultMaxRequests, DefaultMaxRetries}

// Limits returns the cluster's thresholds, Envoy's defaults when none were given.
func (p *ClusterPolicy) Limits() Thresholds {
	if p.Thresholds == nil {
		return DefaultThresholds
	}
	return *p.Thresholds
}

// OutlierDetection is a cluster's passive health checking (consecutive errors only).
type OutlierDetection struct {
	// Consecutive5xx ejects after that many 5xx or locally originated failures in a
	// row, when EnforcingConsecutive5xx (a percentage) says so.
	Consecutive5xx, EnforcingConsecutive5xx uint32
	// ConsecutiveGateway counts 502, 503, 504 and local failures.
	ConsecutiveGateway, EnforcingConsecutiveGateway uint32
	Interval, BaseEjectionTime, MaxEjectionTime     time.Duration
	MaxEjectionPercent                              uint32
}

// SlowStart is Envoy's slow_start_config: new endpoints' weight ramps up.
type SlowStart struct {
	Window           time.Duration
	Aggression       float64
	MinWeightPercent float64
}

// PeakEWMA configures skein's peak-EWMA balancer.
type PeakEWMA struct {
	Decay, DefaultRTT time.Duration
}

// TCPKeepalive is upstream_connection_options.tcp_keepalive.
type TCPKeepalive struct {
	Probes         uint32
	Time, Interval time.Duration
}

// ClusterPolicy holds what a cluster says about balancing, limits and health.
type ClusterPolicy struct {
	RingSize        uint64 // RING_HASH minimum ring size (0: Envoy's 1024)
	MaxRingSize     uint64 // 0: Envoy's 8M
	MaglevTableSize uint64 // 0: Envoy's 65537
	SlowStart       *SlowStart
	ChoiceCount     uint32 // LEAST_REQUEST choices (2)
	// PanicThreshold is the healthy percentage under which the cluster balances over
	// all its hosts, healthy or not (Envoy's default 50; 0 disables panic mode).
	PanicThreshold   float64
	LocalityWeighted bool
	// Thresholds are the circuit breakers; nil means Envoy's defaults.
	Thresholds *Thresholds
	Outlier    *OutlierDetection
	KeepAlive  *TCPKeepalive
	PeakEWMA   *PeakEWMA
	// IdleTimeout closes upstream HTTP connections idle that long (Envoy: 1h default).
	IdleTimeout              time.Duration
	MaxRequestsPerConnection uint32
}

func positiveDuration(d *durationpb.Duration, field string) (time.Duration, error) {
	if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
		return 0, fmt.Errorf("%s must be positive, got %v", field, d)
	}
	return d.AsDuration(), nil
}

// clusterPolicy reads the policy fields of a cluster whose LB has been decoded.
func clusterPolicy(pb *clusterv3.Cluster, c *Cluster) error {
	p := &c.Policy
	p.PanicThreshold = defaultPanicThreshold
	p.ChoiceCount = 2
	if rh := pb.GetRingHashLbConfig(); rh != nil {
		p.RingSize, p.MaxRingSize = 1024, 8<<20
		if c.LB != LBRingHash {
			return errors.New("ring_hash_lb_config needs lb_policy RING_HASH")
		}
		if v := rh.GetMinimumRingSize(); v != nil {
			p.RingSize = v.GetValue()
		}
		if v := rh.GetMaximumRingSize(); v != nil {
			p.MaxRingSize = v.GetValue()
		}
		if p.RingSize == 0 || p.RingSize > p.MaxRingSize || p.MaxRingSize > 8<<20 {
			return fmt.Errorf("ring_hash_lb_config: minimum_ring_size %d must be in 1..maximum_ring_size %d (at most %d)", p.RingSize, p.MaxRingSize, 8<<20)
		}
	}
	if m := pb.GetMaglevLbConfig(); m != nil {
		if c.LB != LBMaglev {
			return errors.New("maglev_lb_config needs lb_policy MAGLEV")
		}
		if v := m.GetTableSize(); v != nil {
			p.MaglevTableSize = v.GetValue()
			if p.MaglevTableSize == 0 || !prime(p.MaglevTableSize) || p.MaglevTableSize > 5000011 {
				return fmt.Errorf("maglev_lb_config.table_size %d must be a prime up to 5000011", p.MaglevTableSize)
			}
		}
	}
	var slow *clusterv3.Cluster_SlowStartConfig
	if rr := pb.GetRoundRobinLbConfig(); rr != nil {
		if c.LB != LBRoundRobin {
			return errors.New("round_robin_lb_config needs lb_policy ROUND_ROBIN")
		}
		slow = rr.GetSlowStartConfig()
	}
	if lr := pb.GetLeastRequestLbConfig(); lr != nil {
		if c.LB != LBLeastRequest {
			return errors.New("least_request_lb_config needs lb_policy LEAST_REQUEST")
		}
		slow = lr.GetSlowStartConfig()
		if v := lr.GetChoiceCount(); v != nil {
			if v.GetValue() < 2 {
				return errors.New("least_request_lb_config.choice_count must be at least 2")
			}
			p.ChoiceCount = v.GetValue()
		}
	}
	if slow != nil {
		s := &SlowStart{Aggression: 1, MinWeightPercent: 10}
		if slow.GetSlowStartWindow() != nil {
			w, err := positiveDuration(slow.GetSlowStartWindow(), "slow_start_config.slow_start_window")
			if err != nil {
				return err
			}
			s.Window = w
		}
		if a := slow.GetAggression(); a != nil {
			s.Aggression = a.GetDefaultValue()
			if s.Aggression <= 0 || math.IsNaN(s.Aggression) {
				return fmt.Errorf("slow_start_config.aggression must be positive, got %v", s.Aggression)
			}
		}
		if m := slow.GetMinWeightPercent(); m != nil {
			s.MinWeightPercent = m.GetValue()
			if s.MinWeightPercent < 0 || s.MinWeightPercent > 100 {
				return fmt.Errorf("slow_start_config.min_weight_percent must be in 0..100, got %v", s.MinWeightPercent)
			}
		}
		if s.Window > 0 {
			p.SlowStart = s
		}
	}
	if cl := pb.GetCommonLbConfig(); cl != nil {
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			p.PanicThreshold = t.GetValue()
			if p.PanicThreshold < 0 || p.PanicThreshold > 100 {
				return fmt.Errorf("common_lb_config.healthy_panic_threshold must be in 0..100, got %v", p.PanicThreshold)
			}
		}
		p.LocalityWeighted = cl.GetLocalityWeightedLbConfig() != nil
	}
	if cb := pb.GetCircuitBreakers(); cb != nil {
		p.Thresholds = &Thresholds{DefaultMaxConnections, DefaultMaxPendingRequests, DefaultMaxRequests, DefaultMaxRetries}
		for i, th := range cb.GetThresholds() {
			if th.GetPriority() != 0 {
				return fmt.Errorf("circuit_breakers.thresholds[%d].priority: only DEFAULT is supported (skein has no HIGH priority routes)", i)
			}
			for _, f := range []struct {
				v *wrapperspb.UInt32Value
				p *uint32
			}{{th.GetMaxConnections(), &p.Thresholds.MaxConnections}, {th.GetMaxPendingRequests(), &p.Thresholds.MaxPendingRequests}, {th.GetMaxRequests(), &p.Thresholds.MaxRequests}, {th.GetMaxRetries(), &p.Thresholds.MaxRetries}} {
				if f.v != nil {
					*f.p = f.v.GetValue()
				}
			}
		}
	}
	if od := pb.GetOutlierDetection(); od != nil {
		o, err := outlierDetection(od)
		if err != nil {
			return err
		}
		p.Outlier = o
	}
	if ka := pb.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		p.KeepAlive = &TCPKeepalive{
			Probes:   ka.GetKeepaliveProbes().GetValue(),
			Time:     time.Duration(ka.GetKeepaliveTime().GetValue()) * time.Second,
			Interval: time.Duration(ka.GetKeepaliveInterval().GetValue()) * time.Second,
		}
	}
	for key, md := range pb.GetMetadata().GetFilterMetadata() {
		if key != SkeinLBMetadataKey {
			return fmt.Errorf("metadata.filter_metadata[%q] unsupported (only %s)", key, SkeinLBMetadataKey)
		}
		fields, err := stringStruct(md, fmt.Sprintf("metadata.filter_metadata[%q]", key))
		if err != nil {
			return err
		}
		if err := peakEWMA(fields, c, p); err != nil {
			return fmt.Errorf("metadata.filter_metadata[%q]: %w", key, err)
		}
	}
	return nil
}

func peakEWMA(fields map[string]string, c *Cluster, p *ClusterPolicy) error {
	e := &PeakEWMA{Decay: 10 * time.Second, DefaultRTT: 30 * time.Millisecond}
	for k, v := range fields {
		switch k {
		case "algorithm":
			if v != "peak-ewma" {
				return fmt.Errorf("algorithm %q unsupported (peak-ewma)", v)
			}
		case "decay", "default_rtt":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: a positive duration is required, got %q", k, v)
			}
			if k == "decay" {
				e.Decay = d
			} else {
				e.DefaultRTT = d
			}
		default:
			return fmt.Errorf("key %q unsupported (algorithm, decay, default_rtt)", k)
		}
	}
	if fields["algorithm"] == "" {
		return errors.New("algorithm is required")
	}
	if c.LB != LBLeastRequest {
		return errors.New("peak-ewma refines lb_policy LEAST_REQUEST")
	}
	p.PeakEWMA = e
	return nil
}

func outlierDetection(od *clusterv3.OutlierDetection) (*OutlierDetection, error) {
	// Envoy's defaults: 5 consecutive 5xx enforced at 100%, gateway failures counted
	// (5) but not enforced, 10s interval, 30s base and 300s max ejection, 10%.
	o := &OutlierDetection{
		Consecutive5xx: 5, EnforcingConsecutive5xx: 100,
		ConsecutiveGateway: 5, EnforcingConsecutiveGateway: 0,
		Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 10,
	}
	if od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() != 0 {
		return nil, errors.New("outlier_detection: success-rate ejection is not supported; set enforcing_success_rate to 0")
	}
	set := func(v *wrapperspb.UInt32Value, dst *uint32, max uint32, field string) error {
		if v == nil {
			return nil
		}
		if v.GetValue() > max {
			return fmt.Errorf("outlier_detection.%s must be at most %d, got %d", field, max, v.GetValue())
		}
		*dst = v.GetValue()
		return nil
	}
	for _, f := range []struct {
		v     *wrapperspb.UInt32Value
		dst   *uint32
		max   uint32
		field string
	}{
		{od.GetConsecutive_5Xx(), &o.Consecutive5xx, math.MaxUint32, "consecutive_5xx"},
		{od.GetEnforcingConsecutive_5Xx(), &o.EnforcingConsecutive5xx, 100, "enforcing_consecutive_5xx"},
		{od.GetConsecutiveGatewayFailure(), &o.ConsecutiveGateway, math.MaxUint32, "consecutive_gateway_failure"},
		{od.GetEnforcingConsecutiveGatewayFailure(), &o.EnforcingConsecutiveGateway, 100, "enforcing_consecutive_gateway_failure"},
		{od.GetMaxEjectionPercent(), &o.MaxEjectionPercent, 100, "max_ejection_percent"},
	} {
		if err := set(f.v, f.dst, f.max, f.field); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		d     *durationpb.Duration
		dst   *time.Duration
		field string
	}{
		{od.GetInterval(), &o.Interval, "interval"},
		{od.GetBaseEjectionTime(), &o.BaseEjectionTime, "base_ejection_time"},
		{od.GetMaxEjectionTime(), &o.MaxEjectionTime, "max_ejection_time"},
	} {
		if f.d == nil {
			continue
		}
		d, err := positiveDuration(f.d, "outlier_detection."+f.field)
		if err != nil {
			return nil, err
		}
		*f.dst = d
	}
	return o, nil
}

func prime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
