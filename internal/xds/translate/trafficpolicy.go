package translate

import (
	"math"
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// SkeinLBMetadataKey is the cluster filter_metadata key of the skein load-balancing
// extension (peak EWMA). Envoy ignores it and balances by the cluster's lb_policy
// (LEAST_REQUEST), so the extension degrades to Envoy's behaviour, never to an error.
const SkeinLBMetadataKey = "skein.dev/lb"

// maxThreshold is Istio's "no limit" for circuit-breaker thresholds left unset.
const maxThreshold = math.MaxUint32

// trafficPolicyFor is the merged DestinationRule policy of one outbound cluster.
func (b *builder) trafficPolicyFor(sp servicePort, subset string) *model.TrafficPolicy {
	return b.idx.rules[sp.host].EffectiveTrafficPolicy(subset, sp.port.Port)
}

// applyTrafficPolicy sets the cluster fields a DestinationRule traffic policy maps to,
// as Istio's cluster builder does: lb_policy and its config, circuit_breakers,
// outlier_detection with the panic threshold, connection options, HTTP protocol
// options and locality weighting.
func (b *builder) applyTrafficPolicy(c *cluster.Cluster, tp *model.TrafficPolicy, protocol model.Protocol) {
	applyLoadBalancer(c, tp)
	if tp == nil {
		return
	}
	if localityMode(tp) == localityDistribute {
		commonLB(c).LocalityConfigSpecifier = &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}
	}
	if cp := tp.ConnectionPool; cp != nil {
		c.CircuitBreakers = circuitBreakers(cp)
		if t := cp.TCP; t != nil {
			if t.ConnectTimeout > 0 {
				c.ConnectTimeout = durationpb.New(t.ConnectTimeout)
			}
			if ka := t.KeepAlive; ka != nil {
				k := &core.TcpKeepalive{}
				if ka.Probes > 0 {
					k.KeepaliveProbes = wrapperspb.UInt32(ka.Probes)
				}
				if ka.Time > 0 {
					k.KeepaliveTime = wrapperspb.UInt32(uint32(max(1, ka.Time.Seconds())))
				}
				if ka.Interval > 0 {
					k.KeepaliveInterval = wrapperspb.UInt32(uint32(max(1, ka.Interval.Seconds())))
				}
				c.UpstreamConnectionOptions = &cluster.UpstreamConnectionOptions{TcpKeepalive: k}
			}
		}
		if h := cp.HTTP; h != nil {
			b.applyHTTPPool(c, h, protocol)
		}
	}
	if od := tp.OutlierDetection; od != nil {
		c.OutlierDetection = outlierDetection(od)
		// Istio sets the panic threshold from minHealthPercent (default 0: no panic).
		commonLB(c).HealthyPanicThreshold = &typev3.Percent{Value: float64(od.MinHealthPercent)}
	}
}

func commonLB(c *cluster.Cluster) *cluster.Cluster_CommonLbConfig {
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &cluster.Cluster_CommonLbConfig{}
	}
	return c.CommonLbConfig
}

// applyLoadBalancer: ROUND_ROBIN unless the policy says otherwise (skein's default,
// where Istio now defaults to LEAST_REQUEST).
func applyLoadBalancer(c *cluster.Cluster, tp *model.TrafficPolicy) {
	if c.LbPolicy == cluster.Cluster_CLUSTER_PROVIDED {
		return // ORIGINAL_DST (ServiceEntry resolution NONE): the connection decides, as in Istio
	}
	c.LbPolicy = cluster.Cluster_ROUND_ROBIN
	if tp == nil || tp.LoadBalancer == nil {
		return
	}
	lb := tp.LoadBalancer
	switch {
	case lb.ConsistentHash != nil && lb.ConsistentHash.Maglev:
		c.LbPolicy = cluster.Cluster_MAGLEV
		if n := lb.ConsistentHash.TableSize; n > 0 {
			c.LbConfig = &cluster.Cluster_MaglevLbConfig_{MaglevLbConfig: &cluster.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(n)}}
		}
	case lb.ConsistentHash != nil:
		c.LbPolicy = cluster.Cluster_RING_HASH
		if n := lb.ConsistentHash.MinimumRingSize; n > 0 {
			c.LbConfig = &cluster.Cluster_RingHashLbConfig_{RingHashLbConfig: &cluster.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}
		}
	case lb.Simple == model.LBLeastRequest:
		c.LbPolicy = cluster.Cluster_LEAST_REQUEST
		if w := slowStart(lb.Warmup); w != nil {
			c.LbConfig = &cluster.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &cluster.Cluster_LeastRequestLbConfig{SlowStartConfig: w}}
		}
		if e := lb.PeakEWMA; e != nil {
			fields := map[string]*structpb.Value{"algorithm": structpb.NewStringValue("peak-ewma")}
			if e.Decay > 0 {
				fields["decay"] = structpb.NewStringValue(e.Decay.String())
			}
			if e.DefaultRTT > 0 {
				fields["default_rtt"] = structpb.NewStringValue(e.DefaultRTT.String())
			}
			c.Metadata = &core.Metadata{FilterMetadata: map[string]*structpb.Struct{SkeinLBMetadataKey: {Fields: fields}}}
		}
	case lb.Simple == model.LBRandom:
		c.LbPolicy = cluster.Cluster_RANDOM
	default:
		if w := slowStart(lb.Warmup); w != nil {
			c.LbConfig = &cluster.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &cluster.Cluster_RoundRobinLbConfig{SlowStartConfig: w}}
		}
	}
}

// slowStart is Istio's warmup translation (aggression default 1, minimum 10%).
func slowStart(w *model.Warmup) *cluster.Cluster_SlowStartConfig {
	if w == nil || w.Duration <= 0 {
		return nil
	}
	aggression := w.Aggression
	if aggression == 0 {
		aggression = 1
	}
	out := &cluster.Cluster_SlowStartConfig{
		SlowStartWindow: durationpb.New(w.Duration),
		Aggression:      &core.RuntimeDouble{DefaultValue: aggression, RuntimeKey: "upstream.istio.warmup.aggression"},
	}
	if w.MinimumPercent > 0 {
		out.MinWeightPercent = &typev3.Percent{Value: w.MinimumPercent}
	}
	return out
}

// circuitBreakers: one default-priority threshold; what the pool leaves unset is
// Istio's "unlimited".
func circuitBreakers(cp *model.ConnectionPool) *cluster.CircuitBreakers {
	th := &cluster.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(maxThreshold),
		MaxPendingRequests: wrapperspb.UInt32(maxThreshold),
		MaxRequests:        wrapperspb.UInt32(maxThreshold),
		MaxRetries:         wrapperspb.UInt32(maxThreshold),
	}
	if t := cp.TCP; t != nil && t.MaxConnections > 0 {
		th.MaxConnections = wrapperspb.UInt32(uint32(t.MaxConnections))
	}
	if h := cp.HTTP; h != nil {
		if h.HTTP1MaxPendingRequests > 0 {
			th.MaxPendingRequests = wrapperspb.UInt32(uint32(h.HTTP1MaxPendingRequests))
		}
		if h.HTTP2MaxRequests > 0 {
			th.MaxRequests = wrapperspb.UInt32(uint32(h.HTTP2MaxRequests))
		}
		if h.MaxRetries > 0 {
			th.MaxRetries = wrapperspb.UInt32(uint32(h.MaxRetries))
		}
	}
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{th}}
}

// h2Upgrade: h2UpgradePolicy UPGRADE makes an HTTP/1.1 port's cluster speak HTTP/2
// (protocol options and TLS ALPN), as Istio does.
func h2Upgrade(tp *model.TrafficPolicy, p model.Protocol) bool {
	return p == model.ProtocolHTTP && tp != nil && tp.ConnectionPool != nil && tp.ConnectionPool.HTTP != nil && tp.ConnectionPool.HTTP.H2Upgrade
}

// applyHTTPPool sets idle timeout and requests per connection in the cluster's HTTP
// protocol options.
func (b *builder) applyHTTPPool(c *cluster.Cluster, h *model.HTTPPool, protocol model.Protocol) {
	any := c.TypedExtensionProtocolOptions[httpProtocolOptionsKey]
	if any == nil {
		return
	}
	opts := &upstreamhttp.HttpProtocolOptions{}
	if err := any.UnmarshalTo(opts); err != nil {
		if b.err == nil {
			b.err = err
		}
		return
	}
	if h.IdleTimeout > 0 || h.MaxRequestsPerConnection > 0 {
		common := &core.HttpProtocolOptions{}
		if h.IdleTimeout > 0 {
			common.IdleTimeout = durationpb.New(h.IdleTimeout)
		}
		if h.MaxRequestsPerConnection > 0 {
			common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(h.MaxRequestsPerConnection))
		}
		opts.CommonHttpProtocolOptions = common
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: b.toAny(opts)}
}

// outlierDetection is Istio's translation: success-rate detection off, each counter
// enforced at 100% when set above 0.
func outlierDetection(od *model.OutlierDetection) *cluster.OutlierDetection {
	out := &cluster.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	enforce := func(v uint32) *wrapperspb.UInt32Value {
		if v > 0 {
			v = 100
		}
		return wrapperspb.UInt32(v)
	}
	if v := od.Consecutive5xxErrors; v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(*v)
		out.EnforcingConsecutive_5Xx = enforce(*v)
	}
	if v := od.ConsecutiveGatewayErrors; v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(*v)
		out.EnforcingConsecutiveGatewayFailure = enforce(*v)
	}
	if od.Interval > 0 {
		out.Interval = durationpb.New(od.Interval)
	}
	if od.BaseEjectionTime > 0 {
		out.BaseEjectionTime = durationpb.New(od.BaseEjectionTime)
	}
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.MaxEjectionPercent))
	}
	return out
}

// localityKey distinguishes load assignments that depend on the proxy's locality
// (failover priorities, distribute weights): "" when the assignment is the same for
// every proxy.
func (b *builder) localityKey(tp *model.TrafficPolicy) string {
	mode := localityMode(tp)
	if mode == localityNone || b.proxy == nil {
		return ""
	}
	key := "|" + model.LocalityOf(b.proxy.Labels).String()
	if mode == localityFailover && tp.LoadBalancer != nil && tp.LoadBalancer.Locality != nil {
		for _, l := range tp.LoadBalancer.Locality.FailoverPriority {
			key += "|" + l + "=" + b.proxy.Labels[l]
		}
	}
	return key + "|" + strconv.Itoa(int(mode))
}

type localityLBMode int

const (
	localityNone localityLBMode = iota
	localityFailover
	localityDistribute
)

// localityMode says how Istio would shape the load assignment: distribute weights
// when the setting has them; failover priorities when outlier detection is on and
// locality load balancing is not disabled (Istio enables it mesh-wide by default).
func localityMode(tp *model.TrafficPolicy) localityLBMode {
	if tp == nil {
		return localityNone
	}
	var l *model.LocalityLB
	if tp.LoadBalancer != nil {
		l = tp.LoadBalancer.Locality
	}
	switch {
	case l != nil && l.Disabled:
		return localityNone
	case l != nil && len(l.Distribute) > 0:
		return localityDistribute
	case tp.OutlierDetection != nil:
		return localityFailover
	}
	return localityNone
}
