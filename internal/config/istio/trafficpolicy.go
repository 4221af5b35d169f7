package istio

import (
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// The DestinationRule trafficPolicy fields skein implements beyond TLS: load balancing
// (simple, consistent hash, locality, warmup), connection pool and outlier detection,
// at the top level, per subset and per port.
func init() {
	const p = "istio.networking.v1alpha3."
	allowFields(
		p+"TrafficPolicy.connection_pool",
		p+"TrafficPolicy.outlier_detection",
		p+"TrafficPolicy.PortTrafficPolicy.load_balancer",
		p+"TrafficPolicy.PortTrafficPolicy.connection_pool",
		p+"TrafficPolicy.PortTrafficPolicy.outlier_detection",

		p+"LoadBalancerSettings.consistent_hash",
		p+"LoadBalancerSettings.locality_lb_setting",
		p+"LoadBalancerSettings.warmup_duration_secs",
		p+"LoadBalancerSettings.warmup",
		p+"WarmupConfiguration.duration",
		p+"WarmupConfiguration.minimum_percent",
		p+"WarmupConfiguration.aggression",
		p+"LoadBalancerSettings.ConsistentHashLB.http_header_name",
		p+"LoadBalancerSettings.ConsistentHashLB.http_cookie",
		p+"LoadBalancerSettings.ConsistentHashLB.use_source_ip",
		p+"LoadBalancerSettings.ConsistentHashLB.http_query_parameter_name",
		p+"LoadBalancerSettings.ConsistentHashLB.ring_hash",
		p+"LoadBalancerSettings.ConsistentHashLB.maglev",
		p+"LoadBalancerSettings.ConsistentHashLB.minimum_ring_size",
		p+"LoadBalancerSettings.ConsistentHashLB.RingHash.minimum_ring_size",
		p+"LoadBalancerSettings.ConsistentHashLB.MagLev.table_size",
		p+"LoadBalancerSettings.ConsistentHashLB.HTTPCookie.name",
		p+"LoadBalancerSettings.ConsistentHashLB.HTTPCookie.path",
		p+"LoadBalancerSettings.ConsistentHashLB.HTTPCookie.ttl",
		p+"LocalityLoadBalancerSetting.distribute",
		p+"LocalityLoadBalancerSetting.failover",
		p+"LocalityLoadBalancerSetting.failover_priority",
		p+"LocalityLoadBalancerSetting.enabled",
		p+"LocalityLoadBalancerSetting.Distribute.from",
		p+"LocalityLoadBalancerSetting.Distribute.to",
		p+"LocalityLoadBalancerSetting.Failover.from",
		p+"LocalityLoadBalancerSetting.Failover.to",

		p+"ConnectionPoolSettings.tcp",
		p+"ConnectionPoolSettings.http",
		p+"ConnectionPoolSettings.TCPSettings.max_connections",
		p+"ConnectionPoolSettings.TCPSettings.connect_timeout",
		p+"ConnectionPoolSettings.TCPSettings.tcp_keepalive",
		p+"ConnectionPoolSettings.TCPSettings.TcpKeepalive.probes",
		p+"ConnectionPoolSettings.TCPSettings.TcpKeepalive.time",
		p+"ConnectionPoolSettings.TCPSettings.TcpKeepalive.interval",
		p+"ConnectionPoolSettings.HTTPSettings.http1_max_pending_requests",
		p+"ConnectionPoolSettings.HTTPSettings.http2_max_requests",
		p+"ConnectionPoolSettings.HTTPSettings.max_requests_per_connection",
		p+"ConnectionPoolSettings.HTTPSettings.max_retries",
		p+"ConnectionPoolSettings.HTTPSettings.idle_timeout",
		p+"ConnectionPoolSettings.HTTPSettings.h2_upgrade_policy",

		p+"OutlierDetection.consecutive_5xx_errors",
		p+"OutlierDetection.consecutive_gateway_errors",
		p+"OutlierDetection.interval",
		p+"OutlierDetection.base_ejection_time",
		p+"OutlierDetection.max_ejection_percent",
		p+"OutlierDetection.min_health_percent",
	)
}

// trafficPolicy translates one trafficPolicy (top level or a subset's).
func trafficPolicy(tp *networking.TrafficPolicy, path string, is *issues) *model.TrafficPolicy {
	if tp == nil {
		return nil
	}
	out := &model.TrafficPolicy{
		LoadBalancer:     loadBalancer(tp.GetLoadBalancer(), strict.Field(path, "loadBalancer"), is),
		ConnectionPool:   connectionPool(tp.GetConnectionPool(), strict.Field(path, "connectionPool"), is),
		OutlierDetection: outlierDetection(tp.GetOutlierDetection(), strict.Field(path, "outlierDetection"), is),
		TLS:              clientTLS(tp.GetTls(), strict.Field(path, "tls"), is),
	}
	checkLocalityNeedsOutlier(out, path, is)
	out.PortLevel = portLevel(tp, path, is)
	return out
}

// checkLocalityNeedsOutlier: Istio applies failover only with outlier detection (else
// no endpoint is ever seen failing); saying failover without it is a mistake.
func checkLocalityNeedsOutlier(tp *model.TrafficPolicy, path string, is *issues) {
	if tp.LoadBalancer == nil || tp.LoadBalancer.Locality == nil || tp.OutlierDetection != nil {
		return
	}
	l := tp.LoadBalancer.Locality
	if len(l.Failover) > 0 || len(l.FailoverPriority) > 0 {
		is.add(strict.Field(path, "outlierDetection"), "localityLbSetting failover needs outlierDetection in the same traffic policy (Istio ignores failover without it)")
	}
}

// portLevel translates trafficPolicy.portLevelSettings.
func portLevel(tp *networking.TrafficPolicy, path string, is *issues) []model.PortTrafficPolicy {
	var out []model.PortTrafficPolicy
	seen := map[uint32]int{}
	for i, pl := range tp.GetPortLevelSettings() {
		ppath := strict.Index(strict.Field(path, "portLevelSettings"), i)
		n := pl.GetPort().GetNumber()
		switch first, dup := seen[n]; {
		case n == 0 || n > 65535:
			is.add(strict.Field(ppath, "port.number"), "a port number in 1..65535 is required")
		case dup:
			is.add(strict.Field(ppath, "port.number"), "port %d is also %s", n, strict.Index(strict.Field(path, "portLevelSettings"), first))
		default:
			seen[n] = i
		}
		out = append(out, model.PortTrafficPolicy{
			Port:             int(n),
			LoadBalancer:     loadBalancer(pl.GetLoadBalancer(), strict.Field(ppath, "loadBalancer"), is),
			ConnectionPool:   connectionPool(pl.GetConnectionPool(), strict.Field(ppath, "connectionPool"), is),
			OutlierDetection: outlierDetection(pl.GetOutlierDetection(), strict.Field(ppath, "outlierDetection"), is),
			TLS:              clientTLS(pl.GetTls(), strict.Field(ppath, "tls"), is),
		})
	}
	return out
}

func loadBalancer(lb *networking.LoadBalancerSettings, path string, is *issues) *model.LoadBalancerSettings {
	if lb == nil {
		return nil
	}
	out := &model.LoadBalancerSettings{}
	switch lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		switch s := lb.GetSimple(); s {
		case networking.LoadBalancerSettings_UNSPECIFIED:
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			out.Simple = model.LBRoundRobin
		case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
			// LEAST_CONN is Istio's deprecated name for LEAST_REQUEST.
			out.Simple = model.LBLeastRequest
		case networking.LoadBalancerSettings_RANDOM:
			out.Simple = model.LBRandom
		case networking.LoadBalancerSettings_PASSTHROUGH:
			is.add(strict.Field(path, "simple"), "PASSTHROUGH is not supported by skein: it needs original-destination clusters for mesh services; use ROUND_ROBIN, LEAST_REQUEST or RANDOM")
		default:
			is.add(strict.Field(path, "simple"), "load balancer %s is not supported", s)
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		out.ConsistentHash = consistentHash(lb.GetConsistentHash(), strict.Field(path, "consistentHash"), is)
	}
	if l := lb.GetLocalityLbSetting(); l != nil {
		out.Locality = localityLB(l, strict.Field(path, "localityLbSetting"), is)
	}
	switch w, secs := lb.GetWarmup(), lb.GetWarmupDurationSecs(); {
	case w != nil && secs != nil:
		is.add(strict.Field(path, "warmup"), "set warmup or the deprecated warmupDurationSecs, not both")
	case secs != nil:
		if d := duration(secs, strict.Field(path, "warmupDurationSecs"), is); d > 0 {
			out.Warmup = &model.Warmup{Duration: d}
		}
	case w != nil:
		wpath := strict.Field(path, "warmup")
		out.Warmup = &model.Warmup{Duration: duration(w.GetDuration(), strict.Field(wpath, "duration"), is)}
		if out.Warmup.Duration <= 0 {
			is.add(strict.Field(wpath, "duration"), "a positive duration is required")
		}
		if m := w.GetMinimumPercent(); m != nil {
			if v := m.GetValue(); v < 0 || v > 100 || math.IsNaN(v) {
				is.add(strict.Field(wpath, "minimumPercent"), "must be in 0..100, got %v", v)
			}
			out.Warmup.MinimumPercent = m.GetValue()
		}
		if a := w.GetAggression(); a != nil {
			if v := a.GetValue(); v < 1 || math.IsNaN(v) {
				is.add(strict.Field(wpath, "aggression"), "must be at least 1, got %v", v)
			}
			out.Warmup.Aggression = a.GetValue()
		}
	}
	if out.Warmup != nil && (out.ConsistentHash != nil || out.Simple == model.LBRandom) {
		is.add(strict.Field(path, "warmup"), "warmup applies to ROUND_ROBIN and LEAST_REQUEST only (Envoy's slow start)")
	}
	return out
}

func consistentHash(ch *networking.LoadBalancerSettings_ConsistentHashLB, path string, is *issues) *model.ConsistentHash {
	out := &model.ConsistentHash{}
	switch ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		out.HTTPHeaderName = strings.ToLower(ch.GetHttpHeaderName())
		if out.HTTPHeaderName == "" {
			is.add(strict.Field(path, "httpHeaderName"), "a header name is required")
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := ch.GetHttpCookie()
		cpath := strict.Field(path, "httpCookie")
		out.HTTPCookie = &model.HashCookie{Name: c.GetName(), Path: c.GetPath()}
		if c.GetName() == "" {
			is.add(strict.Field(cpath, "name"), "a cookie name is required")
		}
		if c.GetTtl() != nil {
			out.HTTPCookie.HasTTL = true
			out.HTTPCookie.TTL = duration(c.GetTtl(), strict.Field(cpath, "ttl"), is)
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		out.UseSourceIP = ch.GetUseSourceIp()
		if !out.UseSourceIP {
			is.add(strict.Field(path, "useSourceIp"), "useSourceIp: false gives no hash key; set a key or remove consistentHash")
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		out.HTTPQueryParameterName = ch.GetHttpQueryParameterName()
		if out.HTTPQueryParameterName == "" {
			is.add(strict.Field(path, "httpQueryParameterName"), "a parameter name is required")
		}
	default:
		is.add(path, "a hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
	}
	const maxRing = 8 << 20 // Envoy's maximum_ring_size
	switch {
	case ch.GetMaglev() != nil:
		out.Maglev = true
		out.TableSize = ch.GetMaglev().GetTableSize()
		if n := out.TableSize; n != 0 && (n > 5000011 || !isPrime(n)) {
			is.add(strict.Field(path, "maglev.tableSize"), "must be a prime number up to 5000011 (Envoy's rule), got %d", n)
		}
		if ch.GetMinimumRingSize() != 0 {
			is.add(strict.Field(path, "minimumRingSize"), "applies to ringHash, not maglev")
		}
	case ch.GetRingHash() != nil:
		out.MinimumRingSize = ch.GetRingHash().GetMinimumRingSize()
		if ch.GetMinimumRingSize() != 0 {
			is.add(strict.Field(path, "minimumRingSize"), "set ringHash.minimumRingSize or the deprecated minimumRingSize, not both")
		}
	default:
		out.MinimumRingSize = ch.GetMinimumRingSize()
	}
	if out.MinimumRingSize > maxRing {
		is.add(strict.Field(path, "ringHash.minimumRingSize"), "at most %d (Envoy's maximum ring size), got %d", maxRing, out.MinimumRingSize)
	}
	return out
}

func isPrime(n uint64) bool {
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

func localityLB(l *networking.LocalityLoadBalancerSetting, path string, is *issues) *model.LocalityLB {
	out := &model.LocalityLB{Disabled: l.GetEnabled() != nil && !l.GetEnabled().GetValue(), FailoverPriority: l.GetFailoverPriority()}
	if len(l.GetDistribute()) > 0 && (len(l.GetFailover()) > 0 || len(l.GetFailoverPriority()) > 0) {
		is.add(path, "distribute and failover/failoverPriority are exclusive (Istio)")
	}
	for i, d := range l.GetDistribute() {
		dpath := strict.Index(strict.Field(path, "distribute"), i)
		checkLocalityPattern(d.GetFrom(), strict.Field(dpath, "from"), is)
		var sum uint32
		for _, k := range model.SortedKeys(d.GetTo()) {
			checkLocalityPattern(k, strict.Field(dpath, "to"), is)
			sum += d.GetTo()[k]
		}
		if sum != 100 {
			is.add(strict.Field(dpath, "to"), "weights must sum to 100, got %d", sum)
		}
		out.Distribute = append(out.Distribute, model.LocalityDistribute{From: d.GetFrom(), To: d.GetTo()})
	}
	for i, f := range l.GetFailover() {
		fpath := strict.Index(strict.Field(path, "failover"), i)
		if f.GetFrom() == "" || strings.Contains(f.GetFrom(), "/") {
			is.add(strict.Field(fpath, "from"), "a region is required (no zone), got %q", f.GetFrom())
		}
		if f.GetTo() == "" || strings.Contains(f.GetTo(), "/") {
			is.add(strict.Field(fpath, "to"), "a region is required (no zone), got %q", f.GetTo())
		}
		if f.GetFrom() == f.GetTo() && f.GetFrom() != "" {
			is.add(strict.Field(fpath, "to"), "failover to the same region %q", f.GetTo())
		}
		out.Failover = append(out.Failover, model.LocalityFailover{From: f.GetFrom(), To: f.GetTo()})
	}
	for i, p := range l.GetFailoverPriority() {
		if p == "" {
			is.add(strict.Index(strict.Field(path, "failoverPriority"), i), "a label name is required")
		}
	}
	return out
}

// checkLocalityPattern: "region[/zone[/subzone]]", "*" only as a whole trailing part.
func checkLocalityPattern(p, path string, is *issues) {
	parts := strings.Split(p, "/")
	if p == "" || len(parts) > 3 {
		is.add(path, "locality %q must be region, region/zone or region/zone/subzone", p)
		return
	}
	for i, part := range parts {
		if part == "" || strings.Contains(part, "*") && (part != "*" || i != len(parts)-1) {
			is.add(path, "locality %q: each part must be a name, or \"*\" as the last part", p)
			return
		}
	}
}

func connectionPool(cp *networking.ConnectionPoolSettings, path string, is *issues) *model.ConnectionPool {
	if cp == nil {
		return nil
	}
	out := &model.ConnectionPool{}
	if t := cp.GetTcp(); t != nil {
		tpath := strict.Field(path, "tcp")
		out.TCP = &model.TCPPool{
			MaxConnections: nonNegative(t.GetMaxConnections(), strict.Field(tpath, "maxConnections"), is),
			ConnectTimeout: duration(t.GetConnectTimeout(), strict.Field(tpath, "connectTimeout"), is),
		}
		if ka := t.GetTcpKeepalive(); ka != nil {
			kpath := strict.Field(tpath, "tcpKeepalive")
			out.TCP.KeepAlive = &model.TCPKeepalive{
				Probes:   ka.GetProbes(),
				Time:     duration(ka.GetTime(), strict.Field(kpath, "time"), is),
				Interval: duration(ka.GetInterval(), strict.Field(kpath, "interval"), is),
			}
		}
	}
	if h := cp.GetHttp(); h != nil {
		hpath := strict.Field(path, "http")
		out.HTTP = &model.HTTPPool{
			HTTP1MaxPendingRequests:  nonNegative(h.GetHttp1MaxPendingRequests(), strict.Field(hpath, "http1MaxPendingRequests"), is),
			HTTP2MaxRequests:         nonNegative(h.GetHttp2MaxRequests(), strict.Field(hpath, "http2MaxRequests"), is),
			MaxRequestsPerConnection: nonNegative(h.GetMaxRequestsPerConnection(), strict.Field(hpath, "maxRequestsPerConnection"), is),
			MaxRetries:               nonNegative(h.GetMaxRetries(), strict.Field(hpath, "maxRetries"), is),
			IdleTimeout:              duration(h.GetIdleTimeout(), strict.Field(hpath, "idleTimeout"), is),
			H2Upgrade:                h.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE,
		}
	}
	return out
}

func outlierDetection(od *networking.OutlierDetection, path string, is *issues) *model.OutlierDetection {
	if od == nil {
		return nil
	}
	out := &model.OutlierDetection{
		Interval:           duration(od.GetInterval(), strict.Field(path, "interval"), is),
		BaseEjectionTime:   duration(od.GetBaseEjectionTime(), strict.Field(path, "baseEjectionTime"), is),
		MaxEjectionPercent: od.GetMaxEjectionPercent(),
		MinHealthPercent:   od.GetMinHealthPercent(),
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		n := v.GetValue()
		out.Consecutive5xxErrors = &n
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		n := v.GetValue()
		out.ConsecutiveGatewayErrors = &n
	}
	if p := out.MaxEjectionPercent; p < 0 || p > 100 {
		is.add(strict.Field(path, "maxEjectionPercent"), "must be in 0..100, got %d", p)
	}
	if p := out.MinHealthPercent; p < 0 || p > 100 {
		is.add(strict.Field(path, "minHealthPercent"), "must be in 0..100, got %d", p)
	}
	if od.GetInterval() != nil && out.Interval <= 0 {
		is.add(strict.Field(path, "interval"), "must be positive")
	}
	if od.GetBaseEjectionTime() != nil && out.BaseEjectionTime <= 0 {
		is.add(strict.Field(path, "baseEjectionTime"), "must be positive")
	}
	return out
}

func nonNegative(v int32, path string, is *issues) int32 {
	if v < 0 {
		is.add(path, "must not be negative, got %d", v)
		return 0
	}
	return v
}

// duration converts a proto duration; negative ones are errors (Istio requires >= 1ms
// for most, which a positive check covers well enough here).
func duration(d *durationpb.Duration, path string, is *issues) time.Duration {
	if d == nil {
		return 0
	}
	if err := d.CheckValid(); err != nil {
		is.add(path, "invalid duration: %v", err)
		return 0
	}
	v := d.AsDuration()
	if v < 0 {
		is.add(path, "must not be negative, got %s", v)
		return 0
	}
	return v
}

// PeakEWMAAnnotation turns on the skein peak-EWMA balancer for a DestinationRule's
// LEAST_REQUEST clusters; PeakEWMADecayAnnotation sets its time constant.
const (
	LBAlgorithmAnnotation   = "lb.skein.dev/algorithm"
	PeakEWMADecayAnnotation = "lb.skein.dev/ewma-decay"
)

// ApplyLBAnnotations applies the skein load-balancing annotations of a DestinationRule:
// with lb.skein.dev/algorithm: peak-ewma, every loadBalancer of the rule whose simple
// algorithm is LEAST_REQUEST (top level, subsets, ports) balances by peak EWMA. At least
// one must be, so the annotation never silently does nothing.
func ApplyLBAnnotations(dr *model.DestinationRule, annotations map[string]string) []strict.Issue {
	var is issues
	algo, ok := annotations[LBAlgorithmAnnotation]
	decayText, hasDecay := annotations[PeakEWMADecayAnnotation]
	if !ok {
		if hasDecay {
			is.add("metadata.annotations."+PeakEWMADecayAnnotation, "needs %s: peak-ewma", LBAlgorithmAnnotation)
		}
		return is
	}
	if algo != "peak-ewma" {
		is.add("metadata.annotations."+LBAlgorithmAnnotation, "unknown algorithm %q (skein knows peak-ewma)", algo)
		return is
	}
	ewma := &model.PeakEWMA{}
	if hasDecay {
		d, err := time.ParseDuration(decayText)
		if err != nil || d <= 0 {
			is.add("metadata.annotations."+PeakEWMADecayAnnotation, "a positive duration is required, got %q", decayText)
		}
		ewma.Decay = d
	}
	n := 0
	apply := func(lb *model.LoadBalancerSettings) {
		if lb != nil && lb.Simple == model.LBLeastRequest {
			lb.PeakEWMA = ewma
			n++
		}
	}
	each := func(tp *model.TrafficPolicy) {
		if tp == nil {
			return
		}
		apply(tp.LoadBalancer)
		for i := range tp.PortLevel {
			apply(tp.PortLevel[i].LoadBalancer)
		}
	}
	each(dr.TrafficPolicy)
	for i := range dr.Subsets {
		each(dr.Subsets[i].TrafficPolicy)
	}
	if n == 0 {
		is.add("metadata.annotations."+LBAlgorithmAnnotation, "%s needs a loadBalancer with simple: LEAST_REQUEST in the rule (peak EWMA refines power-of-two-choices)", algo)
	}
	return is
}
