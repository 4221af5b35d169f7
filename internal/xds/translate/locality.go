package translate

import (
	"sort"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// localityGroups splits a cluster's endpoints into Envoy LocalityLbEndpoints: one per
// locality (from the workloads' topology labels) and priority. Priorities and weights
// follow Istio's locality load balancing for the proxy's own locality:
//   - failover (outlier detection on): priority 0 for the proxy's subzone, 1 its zone,
//     2 its region, 3 the failover region named for its region, 4 the rest; with
//     failoverPriority, the number of trailing labels (of the list) an endpoint does
//     not share with the proxy; priorities are then made consecutive from 0;
//   - distribute: the weights of the first rule whose `from` holds the proxy, each
//     target's weight shared by the localities it matches in proportion to their
//     endpoints; localities no target matches are left out.
func (b *builder) localityGroups(eps []model.Endpoint, tp *model.TrafficPolicy) []*endpoint.LocalityLbEndpoints {
	mode := localityMode(tp)
	var proxyLoc model.Locality
	var proxyLabels map[string]string
	if b.proxy == nil {
		mode = localityNone
	} else {
		proxyLoc, proxyLabels = model.LocalityOf(b.proxy.Labels), b.proxy.Labels
	}
	setting := &model.LocalityLB{}
	if tp != nil && tp.LoadBalancer != nil && tp.LoadBalancer.Locality != nil {
		setting = tp.LoadBalancer.Locality
	}
	type key struct {
		loc      model.Locality
		priority int
	}
	groups := map[key]*endpoint.LocalityLbEndpoints{}
	var keys []key
	for _, e := range eps {
		k := key{loc: e.Locality()}
		if mode == localityFailover {
			if prio := setting.FailoverPriority; len(prio) > 0 {
				k.priority = labelPriority(prio, proxyLabels, e.Labels)
			} else {
				k.priority = regionPriority(proxyLoc, k.loc, setting.Failover)
			}
		}
		g := groups[k]
		if g == nil {
			g = &endpoint.LocalityLbEndpoints{Priority: uint32(k.priority)}
			if !k.loc.IsZero() {
				g.Locality = &core.Locality{Region: k.loc.Region, Zone: k.loc.Zone, SubZone: k.loc.Subzone}
			}
			groups[k] = g
			keys = append(keys, k)
		}
		health := core.HealthStatus_HEALTHY
		if !e.Healthy {
			health = core.HealthStatus_UNHEALTHY
		}
		ep := lbEndpoint(e.Address, e.Port, &health)
		ep.Metadata = b.endpointMetadata(e)
		g.LbEndpoints = append(g.LbEndpoints, ep)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].priority != keys[j].priority {
			return keys[i].priority < keys[j].priority
		}
		return keys[i].loc.String() < keys[j].loc.String()
	})
	// Envoy wants priorities 0..N without gaps.
	compact, last := -1, -1
	out := make([]*endpoint.LocalityLbEndpoints, 0, len(keys))
	for _, k := range keys {
		if k.priority != last {
			compact++
			last = k.priority
		}
		g := groups[k]
		g.Priority = uint32(compact)
		out = append(out, g)
	}
	if mode == localityDistribute {
		out = distributeWeights(out, proxyLoc, setting.Distribute)
	}
	return out
}

// regionPriority is Istio's LbPriority plus its failover rule.
func regionPriority(proxy, ep model.Locality, failover []model.LocalityFailover) int {
	switch {
	case proxy.Region == ep.Region && proxy.Zone == ep.Zone && proxy.Subzone == ep.Subzone:
		return 0
	case proxy.Region == ep.Region && proxy.Zone == ep.Zone:
		return 1
	case proxy.Region == ep.Region:
		return 2
	}
	for _, f := range failover {
		if f.From == proxy.Region {
			if f.To == ep.Region {
				return 3
			}
			return 4
		}
	}
	return 3
}

// labelPriority: 0 when the endpoint shares every listed label value with the proxy,
// else the number of labels after the longest shared prefix.
func labelPriority(labels []string, proxy, ep map[string]string) int {
	for i, l := range labels {
		pv, ok := proxy[l]
		if !ok || ep[l] != pv {
			return len(labels) - i
		}
	}
	return 0
}

func distributeWeights(groups []*endpoint.LocalityLbEndpoints, proxy model.Locality, rules []model.LocalityDistribute) []*endpoint.LocalityLbEndpoints {
	locOf := func(g *endpoint.LocalityLbEndpoints) model.Locality {
		return model.Locality{Region: g.GetLocality().GetRegion(), Zone: g.GetLocality().GetZone(), Subzone: g.GetLocality().GetSubZone()}
	}
	var rule *model.LocalityDistribute
	for i := range rules {
		if proxy.MatchesPattern(rules[i].From) {
			rule = &rules[i]
			break
		}
	}
	if rule == nil {
		// No rule for this proxy: every locality weighs its endpoints (plain balancing).
		for _, g := range groups {
			g.LoadBalancingWeight = wrapperspb.UInt32(uint32(len(g.LbEndpoints)))
		}
		return groups
	}
	weights := make([]float64, len(groups))
	for _, target := range model.SortedKeys(rule.To) {
		total := 0
		for _, g := range groups {
			if locOf(g).MatchesPattern(target) {
				total += len(g.LbEndpoints)
			}
		}
		for i, g := range groups {
			if total > 0 && locOf(g).MatchesPattern(target) {
				weights[i] += float64(rule.To[target]) * float64(len(g.LbEndpoints)) / float64(total)
			}
		}
	}
	var out []*endpoint.LocalityLbEndpoints
	for i, g := range groups {
		// Scaled so shares of one target keep their proportion after rounding.
		if w := uint32(weights[i]*100 + 0.5); w > 0 {
			g.LoadBalancingWeight = wrapperspb.UInt32(w)
			out = append(out, g)
		}
	}
	return out
}
