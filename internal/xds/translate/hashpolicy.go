package translate

import (
	"strconv"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"skein.dev/skein/internal/model"
)

// hashPolicy is the RouteAction.hash_policy for a route sending to these outbound
// clusters: the consistentHash key of the first cluster whose DestinationRule policy
// (merged for its subset and port) balances by consistent hash, as Istio puts the
// destination's hash key on the route. nil when none does.
func (b *builder) hashPolicy(clusters ...string) []*route.RouteAction_HashPolicy {
	for _, name := range clusters {
		port, subset, host, ok := parseOutboundClusterName(name)
		if !ok {
			continue
		}
		tp := b.idx.rules[host].EffectiveTrafficPolicy(subset, port)
		if tp == nil || tp.LoadBalancer == nil || tp.LoadBalancer.ConsistentHash == nil {
			continue
		}
		return []*route.RouteAction_HashPolicy{hashPolicyOf(tp.LoadBalancer.ConsistentHash)}
	}
	return nil
}

func hashPolicyOf(ch *model.ConsistentHash) *route.RouteAction_HashPolicy {
	hp := &route.RouteAction_HashPolicy{}
	switch {
	case ch.HTTPHeaderName != "":
		hp.PolicySpecifier = &route.RouteAction_HashPolicy_Header_{Header: &route.RouteAction_HashPolicy_Header{HeaderName: ch.HTTPHeaderName}}
	case ch.HTTPCookie != nil:
		c := &route.RouteAction_HashPolicy_Cookie{Name: ch.HTTPCookie.Name, Path: ch.HTTPCookie.Path}
		if ch.HTTPCookie.HasTTL {
			c.Ttl = durationpb.New(ch.HTTPCookie.TTL)
		}
		hp.PolicySpecifier = &route.RouteAction_HashPolicy_Cookie_{Cookie: c}
	case ch.UseSourceIP:
		hp.PolicySpecifier = &route.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &route.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}
	case ch.HTTPQueryParameterName != "":
		hp.PolicySpecifier = &route.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &route.RouteAction_HashPolicy_QueryParameter{Name: ch.HTTPQueryParameterName}}
	}
	return hp
}

// parseOutboundClusterName reverses OutboundClusterName.
func parseOutboundClusterName(name string) (port int, subset, host string, ok bool) {
	parts := strings.SplitN(name, "|", 4)
	if len(parts) != 4 || parts[0] != "outbound" {
		return 0, "", "", false
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, "", "", false
	}
	return port, parts[2], parts[3], true
}
