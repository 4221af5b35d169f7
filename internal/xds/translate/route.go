package translate

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// routes returns the RDS route configurations: for a sidecar `outbound_http_proxy` (when
// it has an explicit HTTP proxy port) and one per HTTP upstream listener; for a generic
// client one per HTTP service port, named like an upstream listener's. Inbound
// listeners carry their routes inline and are not here.
func (b *builder) routes() ([]types.Resource, error) {
	var out []*route.RouteConfiguration
	if b.proxy == nil {
		for _, sp := range b.ports {
			if !sp.port.Protocol.IsHTTP() {
				continue
			}
			rc, err := b.singleHostRoute(sp)
			if err != nil {
				return nil, err
			}
			out = append(out, rc)
		}
		return sortByName(out), nil
	}
	if b.capture() {
		return b.captureRoutes()
	}
	if b.proxy.OutboundHTTPPort != 0 {
		var vhosts []*route.VirtualHost
		for _, sp := range b.ports {
			if !sp.port.Protocol.IsHTTP() {
				continue
			}
			vh, err := b.virtualHost(sp, b.domainsVariant(sp), func() []string { return b.domains(sp) })
			if err != nil {
				return nil, err
			}
			vhosts = append(vhosts, vh)
		}
		out = append(out, b.sharedRouteConfig(OutboundHTTPProxyName, vhosts))
	}
	for _, up := range b.upstreams() {
		if !up.sp.port.Protocol.IsHTTP() {
			continue
		}
		rc, err := b.singleHostRoute(up.sp)
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return sortByName(out), nil
}

// singleHostRoute is the route of a listener dedicated to one service port: one virtual
// host matching any Host.
func (b *builder) singleHostRoute(sp servicePort) (*route.RouteConfiguration, error) {
	vh, err := b.virtualHost(sp, "*", func() []string { return []string{"*"} })
	if err != nil {
		return nil, err
	}
	return b.sharedRouteConfig(UpstreamListenerName(sp.port.Port, sp.host), []*route.VirtualHost{vh}), nil
}

// sharedRouteConfig returns the route configuration of that name holding exactly
// these (shared, immutable) virtual hosts, built once per Index: every proxy with the
// same scope gets the same object.
func (b *builder) sharedRouteConfig(name string, vhosts []*route.VirtualHost) *route.RouteConfiguration {
	key := make([]byte, 0, len(name)+1+8*len(vhosts))
	key = append(append(key, name...), 0)
	for _, vh := range vhosts {
		key = binary.LittleEndian.AppendUint64(key, uint64(reflect.ValueOf(vh).Pointer()))
	}
	rc, _ := cached(b.idx, b.idx.routeConfigs, string(key), func() (*route.RouteConfiguration, error) {
		return &route.RouteConfiguration{Name: name, VirtualHosts: vhosts}, nil
	})
	return rc
}

// virtualHost depends only on the service port, its domains, which variant names
// (see domainsVariant), and which source-conditioned matches apply to the proxy (see
// sourceVariant): built once per Index, service port and variant.
func (b *builder) virtualHost(sp servicePort, variant string, domains func() []string) (*route.VirtualHost, error) {
	if vs := b.virtualServiceFor(sp.host); vs != nil {
		if sv := b.sourceVariant(vs); sv != "" {
			variant += "|src:" + sv
		}
	}
	return cached(b.idx, b.idx.vhosts, sp.key+"|"+variant, func() (*route.VirtualHost, error) {
		return b.newVirtualHost(sp, domains())
	})
}

func (b *builder) newVirtualHost(sp servicePort, domains []string) (*route.VirtualHost, error) {
	routes, err := b.httpRoutes(sp)
	if err != nil {
		return nil, err
	}
	return &route.VirtualHost{
		Name:    VirtualHostName(sp.host, sp.port.Port),
		Domains: domains,
		Routes:  routes,
	}, nil
}

// domains lists the Host header forms of a service port, as Istio: FQDN, short name (only
// for proxies in the service's namespace), name.ns and name.ns.svc, each with the port,
// and without it when the port is 80 or the service's only HTTP port.
func (b *builder) domains(sp servicePort) []string {
	if sp.svc.Entry != nil {
		return entryDomains(sp)
	}
	name, ns := sp.svc.Name, sp.svc.Namespace
	hosts := []string{sp.host}
	if b.proxy != nil && b.proxy.Workload.Namespace == ns {
		hosts = append(hosts, name)
	}
	hosts = append(hosts, name+"."+ns, name+"."+ns+".svc")
	portless := sp.port.Port == 80 || httpPortCount(sp.svc) == 1
	port := ":" + strconv.Itoa(sp.port.Port)
	var out []string
	for _, h := range hosts {
		if portless {
			out = append(out, h)
		}
		out = append(out, h+port)
	}
	return out
}

// domainsVariant names the set of domains b.domains gives sp for this proxy: it differs
// only by whether the proxy is in the service's namespace (short names).
func (b *builder) domainsVariant(sp servicePort) string {
	if b.proxy != nil && b.proxy.Workload.Namespace == sp.svc.Namespace {
		return "local"
	}
	return "remote"
}

func httpPortCount(s *model.Service) int {
	n := 0
	for _, p := range s.Ports {
		if p.Protocol.IsHTTP() {
			n++
		}
	}
	return n
}

// virtualServiceFor returns the first VirtualService (in model order) that names the
// host and applies to sidecars (no gateways, or the "mesh" gateway).
func (b *builder) virtualServiceFor(host string) *model.VirtualService {
	return b.idx.vs[host]
}

func appliesToMesh(vs *model.VirtualService) bool {
	if len(vs.Gateways) == 0 {
		return true
	}
	for _, g := range vs.Gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// httpRoutes translates the VirtualService rules for a service port in order (first
// match wins); each HTTPMatch becomes one Envoy route with the rule's action. Matches
// for another port, or whose source conditions exclude this proxy, are left out.
// Without a VirtualService, or when none of its rules applies to this port, one default
// route sends everything to the service port's cluster.
func (b *builder) httpRoutes(sp servicePort) ([]*route.Route, error) {
	var out []*route.Route
	vs := b.virtualServiceFor(sp.host)
	if mr := b.mesh.MeshRoutes[sp.host]; vs == nil && len(mr) > 0 {
		// Gateway API routes whose parent is this Service (GAMMA), already in
		// precedence order; a VirtualService for the host wins over them.
		for _, r := range mr {
			if len(r.Matches) > 0 && r.Matches[0].Port != 0 && r.Matches[0].Port != sp.port.Port {
				continue
			}
			routes, err := b.gatewayRoute(r)
			if err != nil {
				return nil, err
			}
			out = append(out, routes...)
		}
	}
	if vs != nil {
		for i, rule := range vs.HTTP {
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []model.HTTPMatch{{}}
			}
			name := rule.Name
			if name == "" {
				name = fmt.Sprintf("%s.%s/%d", vs.Name, vs.Namespace, i)
			}
			var action *route.RouteAction
			for _, m := range matches {
				if m.Port != 0 && m.Port != sp.port.Port || !m.AppliesToSource(b.proxy) || !m.AppliesToGateway("mesh") {
					continue
				}
				rm, err := routeMatch(m)
				if err != nil {
					return nil, &ConfigError{Kind: "VirtualService", Name: vs.NamespacedName, Source: vs.Source, Err: err}
				}
				r := &route.Route{Name: name, Match: rm}
				if rule.Redirect != nil {
					r.Action = &route.Route_Redirect{Redirect: redirectAction(rule.Redirect)}
				} else {
					if action == nil {
						if action, err = b.routeAction(vs, rule, sp); err != nil {
							return nil, err
						}
					}
					r.Action = &route.Route_Route{Route: proto.Clone(action).(*route.RouteAction)}
				}
				b.applyRouteExtras(r, rule)
				out = append(out, r)
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return []*route.Route{{
		Name:  DefaultRouteName,
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: OutboundClusterName(sp.port.Port, "", sp.host)},
			Timeout:          durationpb.New(0),
			RetryPolicy:      b.retryPolicy(nil),
			HashPolicy:       b.hashPolicy(OutboundClusterName(sp.port.Port, "", sp.host)),
		}},
	}}, nil
}

// routeAction sends to one cluster or splits by weight, with the rule's rewrite,
// retries and mirrors. The timeout is always set: 0s disables Envoy's 15 s default, as
// Istio does.
func (b *builder) routeAction(vs *model.VirtualService, rule model.HTTPRoute, sp servicePort) (*route.RouteAction, error) {
	clusters, err := b.destinationClusters(vs, rule.Destinations, sp)
	if err != nil {
		return nil, err
	}
	a := &route.RouteAction{Timeout: durationpb.New(rule.Timeout), RetryPolicy: b.retryPolicy(rule.Retries)}
	applyRewrite(a, rule.Rewrite)
	if a.RequestMirrorPolicies, err = b.mirrorPolicies(vs, rule.Mirrors, sp); err != nil {
		return nil, err
	}
	for _, c := range clusters {
		if a.HashPolicy == nil {
			a.HashPolicy = b.hashPolicy(c.name) // DestinationRule consistentHash (hashpolicy.go)
		}
	}
	if len(clusters) == 1 {
		a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: clusters[0].name}
		return a, nil
	}
	wc := &route.WeightedCluster{}
	for i, c := range clusters {
		cw := &route.WeightedCluster_ClusterWeight{Name: c.name, Weight: wrapperspb.UInt32(uint32(c.weight))}
		if h := rule.Destinations[i].Headers; !h.Empty() {
			cw.RequestHeadersToAdd = headerValueOptions(h.Request)
			cw.RequestHeadersToRemove = h.Request.Remove
			cw.ResponseHeadersToAdd = headerValueOptions(h.Response)
			cw.ResponseHeadersToRemove = h.Response.Remove
		}
		wc.Clusters = append(wc.Clusters, cw)
	}
	a.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: wc}
	return a, nil
}

type weightedCluster struct {
	name   string
	weight int
}

// destinationClusters resolves route destinations to cluster names. Port 0 means the
// port being built when the destination is the same service, else the destination
// service's only port.
func (b *builder) destinationClusters(vs *model.VirtualService, dests []model.RouteDestination, sp servicePort) ([]weightedCluster, error) {
	fail := func(format string, args ...any) error {
		return &ConfigError{Kind: "VirtualService", Name: vs.NamespacedName, Source: vs.Source,
			Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidRoute}, args...)...)}
	}
	if len(dests) == 0 {
		return nil, fail("route for %s has no destination", sp.host)
	}
	out := make([]weightedCluster, 0, len(dests))
	for _, d := range dests {
		port := d.Port
		if port == 0 {
			switch svc := b.idx.services[d.Host]; {
			case d.Host == sp.host:
				port = sp.port.Port
			case svc != nil && len(svc.Ports) == 1:
				port = svc.Ports[0].Port
			case svc == nil:
				return nil, fail("destination %s: unknown service, port required", d.Host)
			default:
				return nil, fail("destination %s has %d ports: port required", d.Host, len(svc.Ports))
			}
		}
		if d.Weight < 0 || d.Weight > 100 {
			return nil, fail("destination %s: weight %d out of 0..100", d.Host, d.Weight)
		}
		out = append(out, weightedCluster{name: OutboundClusterName(port, d.Subset, d.Host), weight: d.Weight})
	}
	return out, nil
}

func routeMatch(m model.HTTPMatch) (*route.RouteMatch, error) {
	rm := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	if m.URI != nil {
		switch m.URI.Kind {
		case model.MatchExact:
			rm.PathSpecifier = &route.RouteMatch_Path{Path: m.URI.Value}
		case model.MatchPrefix:
			rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: m.URI.Value}
		case model.MatchRegex:
			rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: m.URI.Value}}
		default:
			return nil, fmt.Errorf("%w: uri match kind %q", ErrInvalidRoute, m.URI.Kind)
		}
	}
	for _, name := range model.SortedKeys(m.Headers) {
		hm, err := routeHeaderMatcher(name, m.Headers[name], false)
		if err != nil {
			return nil, err
		}
		rm.Headers = append(rm.Headers, hm)
	}
	if err := matchExtras(rm, m); err != nil {
		return nil, err
	}
	return rm, nil
}

func stringMatcher(s model.StringMatch) (*matcher.StringMatcher, error) {
	switch s.Kind {
	case model.MatchExact:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s.Value}}, nil
	case model.MatchPrefix:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: s.Value}}, nil
	case model.MatchRegex:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: s.Value}}}, nil
	}
	return nil, fmt.Errorf("%w: match kind %q", ErrInvalidRoute, s.Kind)
}

// tcpDestinations picks the first VirtualService tcp route for the port (port 0 matches
// any) whose destination subnets hold the service's VIP and whose source conditions
// hold for this proxy, else the service port's own cluster.
func (b *builder) tcpDestinations(sp servicePort) ([]weightedCluster, error) {
	if vs := b.virtualServiceFor(sp.host); vs != nil {
		for _, r := range vs.TCP {
			if (r.Port == 0 || r.Port == sp.port.Port) && r.Applies(sp.svc.VIP, b.proxy) {
				return b.destinationClusters(vs, r.Destinations, sp)
			}
		}
	}
	return []weightedCluster{{name: OutboundClusterName(sp.port.Port, "", sp.host), weight: 100}}, nil
}
