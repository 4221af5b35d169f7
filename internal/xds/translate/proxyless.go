package translate

import (
	"slices"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Proxyless gRPC (grpc-go's xds:/// resolver). A client dialing
// xds:///catalog.default.svc.cluster.local:9090 asks LDS for the listener named by the
// target; it must be an API listener (no address) whose HttpConnectionManager carries
// its routes inline, with a virtual host whose domains match the target. The client then
// asks CDS and EDS for exactly the clusters those routes name. With an ADS snapshot cache
// a reply waits until a request names every resource of its type in the snapshot, so
// the snapshot holds that closure and nothing else.

// grpcRetryOn are the retry_on values grpc-go understands (gRPC status names); it
// ignores the HTTP ones a sidecar route uses.
var grpcRetryOn = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// ForClient builds the resources of a generic client that named the listeners it wants
// (a proxyless gRPC client names its dial targets). Each name that resolves to an HTTP
// service port (see ResolveTarget) becomes an API listener; names that resolve to
// nothing are left out, so the client learns they do not exist. Clusters and endpoints
// are those the listeners' routes reach. With no names it is ForProxy(nil).
func (x *Index) ForClient(listenerNames []string) (*Resources, error) {
	if len(listenerNames) == 0 {
		return x.ForProxy(nil)
	}
	b := newBuilder(x, nil)
	var lis []*listener.Listener
	wanted := map[string]bool{}
	for _, name := range listenerNames {
		sp, ok := b.resolveTarget(name)
		if !ok || !sp.port.Protocol.IsHTTP() {
			continue
		}
		l, clusters, err := b.apiListener(name, sp)
		if err != nil {
			return nil, err
		}
		lis = append(lis, l)
		for _, c := range clusters {
			wanted[c] = true
		}
	}
	res := &Resources{Listeners: sortByName(lis)}
	for _, c := range b.clusters() {
		if wanted[resourceName(c)] {
			res.Clusters = append(res.Clusters, c)
		}
	}
	for _, e := range b.endpoints() {
		if wanted[resourceName(e)] {
			res.Endpoints = append(res.Endpoints, proxylessAssignment(e.(*endpoint.ClusterLoadAssignment)))
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	return res, nil
}

// proxylessAssignment gives every locality group a locality (empty when unknown) and
// a load_balancing_weight (its endpoint count) where it has none: grpc-go rejects a
// group without locality and drops one without weight; Envoy needs neither. The shared
// assignment is copied, not changed.
func proxylessAssignment(cla *endpoint.ClusterLoadAssignment) *endpoint.ClusterLoadAssignment {
	missing := false
	for _, l := range cla.GetEndpoints() {
		missing = missing || l.GetLoadBalancingWeight().GetValue() == 0 || l.GetLocality() == nil
	}
	if !missing {
		return cla
	}
	cla = proto.Clone(cla).(*endpoint.ClusterLoadAssignment)
	for _, l := range cla.Endpoints {
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			l.LoadBalancingWeight = wrapperspb.UInt32(uint32(max(1, len(l.GetLbEndpoints()))))
		}
		if l.Locality == nil {
			l.Locality = &core.Locality{}
		}
	}
	return cla
}

// resolveTarget finds the service port a dial target names: `<host>:<port>` or
// `<host>` for a service with one port, where host is the FQDN, `name.ns.svc` or
// `name.ns` (a proxyless client has no namespace of its own, so no short names).
func (b *builder) resolveTarget(target string) (servicePort, bool) {
	host, port := target, 0
	if i := strings.LastIndexByte(target, ':'); i > 0 {
		n, err := strconv.Atoi(target[i+1:])
		if err != nil {
			return servicePort{}, false
		}
		host, port = target[:i], n
	}
	fqdn := host
	if _, ok := b.idx.services[fqdn]; !ok {
		switch parts := strings.Split(host, "."); {
		case len(parts) == 2, len(parts) == 3 && parts[2] == "svc":
			fqdn = parts[0] + "." + parts[1] + "." + b.suffix
		}
	}
	if port == 0 {
		svc := b.idx.services[fqdn]
		if svc == nil || len(svc.Ports) != 1 {
			return servicePort{}, false
		}
		port = svc.Ports[0].Port
	}
	return b.servicePort(fqdn, port)
}

// apiListener is the listener for one dial target, and the clusters its routes name.
func (b *builder) apiListener(name string, sp servicePort) (*listener.Listener, []string, error) {
	routes, err := b.httpRoutes(sp)
	if err != nil {
		return nil, nil, err
	}
	routes, clusters := proxylessRoutes(routes)
	m := &hcm.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: name,
			VirtualHosts: []*route.VirtualHost{{
				Name:    VirtualHostName(sp.host, sp.port.Port),
				Domains: []string{name},
				Routes:  routes,
			}},
		}},
	}
	m.HttpFilters = append(b.proxylessHTTPFilters(routes), &hcm.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(&router.Router{})},
	})
	l := &listener.Listener{
		Name:        name,
		ApiListener: &listener.ApiListener{ApiListener: b.toAny(m)},
	}
	return l, clusters, nil
}

// proxylessHTTPFilters adds, before the router, each HTTP filter some route configures
// per route (fault injection): grpc-go runs only filters listed in the manager.
func (b *builder) proxylessHTTPFilters(routes []*route.Route) []*hcm.HttpFilter {
	var names []string
	empty := map[string]*anypb.Any{}
	for _, r := range routes {
		for name, cfg := range r.GetTypedPerFilterConfig() {
			if _, seen := empty[name]; !seen {
				names = append(names, name)
				empty[name] = cfg
			}
		}
	}
	slices.Sort(names)
	var out []*hcm.HttpFilter
	for _, name := range names {
		// The filter's own config is empty (no fault unless a route says so); the typed
		// config must still be of the filter's type, so it is an empty message of the
		// per-route config's type.
		cfg := empty[name]
		blank := &anypb.Any{TypeUrl: cfg.GetTypeUrl()}
		out = append(out, &hcm.HttpFilter{Name: name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: blank}})
	}
	return out
}

// proxylessRoutes adapts sidecar routes to what grpc-go honours (docs/XDS.md,
// "Proxyless gRPC"): the route timeout becomes max_stream_duration, retry_on keeps gRPC
// status names (an HTTP 5xx-style condition becomes `unavailable`, what a gRPC client
// sees for it), zero-weight clusters are dropped. It returns copies and the cluster
// names the routes reach.
func proxylessRoutes(in []*route.Route) ([]*route.Route, []string) {
	var out []*route.Route
	seen := map[string]bool{}
	var clusters []string
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			clusters = append(clusters, c)
		}
	}
	for _, r := range in {
		r = proto.Clone(r).(*route.Route)
		// grpc-go has no CORS filter (and browsers do not speak gRPC to it).
		delete(r.TypedPerFilterConfig, CORSFilterName)
		if len(r.TypedPerFilterConfig) == 0 {
			r.TypedPerFilterConfig = nil
		}
		a := r.GetRoute()
		if a == nil {
			out = append(out, r)
			continue
		}
		if t := a.GetTimeout(); t != nil && t.AsDuration() > 0 {
			a.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(t.AsDuration())}
		}
		if rp := a.GetRetryPolicy(); rp != nil {
			rp.RetryOn = grpcRetryConditions(rp.GetRetryOn())
			if rp.RetryOn == "" {
				a.RetryPolicy = nil
			}
		}
		switch cs := a.GetClusterSpecifier().(type) {
		case *route.RouteAction_Cluster:
			add(cs.Cluster)
		case *route.RouteAction_WeightedClusters:
			var kept []*route.WeightedCluster_ClusterWeight
			for _, c := range cs.WeightedClusters.GetClusters() {
				if c.GetWeight().GetValue() > 0 {
					kept = append(kept, c)
					add(c.GetName())
				}
			}
			if len(kept) == 1 {
				a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: kept[0].GetName()}
			} else {
				cs.WeightedClusters.Clusters = kept
			}
		}
		out = append(out, r)
	}
	return out, clusters
}

// grpcRetryConditions maps an Envoy retry_on list to gRPC status names.
func grpcRetryConditions(retryOn string) string {
	var out []string
	for _, c := range strings.Split(retryOn, ",") {
		c = strings.TrimSpace(c)
		switch {
		case slices.Contains(grpcRetryOn, c):
		case c == "5xx", c == "gateway-error", c == "connect-failure", c == "reset", c == "refused-stream":
			c = "unavailable"
		default:
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return strings.Join(out, ",")
}
