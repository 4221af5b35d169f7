package translate

import (
	"sort"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// listeners returns a sidecar's CaptureNone listeners (docs/XDS.md): one inbound
// listener per container port, the explicit HTTP proxy, and one listener per allocated
// upstream port. Generic clients get none.
func (b *builder) listeners() ([]types.Resource, error) {
	if b.proxy == nil {
		return nil, nil
	}
	if b.capture() {
		return b.captureListeners()
	}
	var out []*listener.Listener
	for _, cp := range b.inboundPorts() {
		out = append(out, b.inboundListener(cp))
	}
	if b.proxy.OutboundHTTPPort != 0 {
		out = append(out, b.listener(OutboundHTTPProxyName, b.proxy.OutboundHTTPPort,
			b.httpConnectionManager(OutboundHTTPProxyName, nil, b.withHTTPFilters(b.outboundHTTPFilters()))))
	}
	for _, up := range b.upstreams() {
		name := UpstreamListenerName(up.sp.port.Port, up.sp.host)
		if up.sp.port.Protocol.IsHTTP() {
			out = append(out, b.listener(name, up.localPort, b.httpConnectionManager(name, nil, b.withHTTPFilters(b.outboundHTTPFilters()))))
			continue
		}
		dests, err := b.tcpDestinations(up.sp)
		if err != nil {
			return nil, err
		}
		l := b.listener(name, up.localPort, b.tcpProxy(name, dests))
		sni, err := b.sniChains(up.sp, nil)
		if err != nil {
			return nil, err
		}
		if len(sni) > 0 { // tls routes (l4routes.go): chains by SNI before the port's own
			l.FilterChains = append(sni, l.FilterChains...)
			l.ListenerFilters = append(l.ListenerFilters, b.tlsInspector())
		}
		out = append(out, l)
	}
	return sortByName(out), nil
}

// inboundListener accepts peers' traffic for one container port and forwards it to the
// app: HTTP ports through an inline route, other ports byte for byte.
func (b *builder) inboundListener(containerPort int) *listener.Listener {
	name := InboundListenerName(containerPort)
	http := b.inboundProtocol(containerPort).IsHTTP()
	l := b.listener(name, b.proxy.InboundPorts[containerPort], b.inboundFilters(containerPort, http)...)
	b.secureInbound(l, containerPort, http)
	return l
}

// inboundFilters are the network filters for a container port's inbound traffic: an
// HTTP connection manager (jwt_authn and RBAC HTTP filters before the router) with an
// inline route to the inbound cluster, or network RBAC filters then a tcp_proxy to it.
// They are the same in both capture modes: CaptureNone puts them in the port's own
// listener's chains, CaptureIPTables in virtualInbound's chains for the port.
func (b *builder) inboundFilters(containerPort int, http bool) []*listener.Filter {
	name := InboundListenerName(containerPort)
	cluster := InboundClusterName(containerPort)
	if !http {
		// Network RBAC filters (rbac.go) run before tcp_proxy.
		return append(b.networkRBACFilters(containerPort), b.tcpProxy(name, []weightedCluster{{name: cluster, weight: 100}}))
	}
	rc := &route.RouteConfiguration{
		Name: name,
		VirtualHosts: []*route.VirtualHost{{
			Name:    "inbound|http|" + itoa(containerPort),
			Domains: []string{"*"},
			Routes: []*route.Route{{
				Name:  DefaultRouteName,
				Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{
					ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cluster},
					Timeout:          durationpb.New(0),
				}},
			}},
		}},
	}
	return []*listener.Filter{b.httpConnectionManager(name, rc, b.forwardClientCert, b.withHTTPFilters(b.inboundHTTPFilters(containerPort)))}
}

// inboundHTTPFilters are the HTTP filters before the router on an inbound listener, in
// Istio's order: jwt_authn (jwt.go), then RBAC AUDIT, DENY, ALLOW (rbac.go).
func (b *builder) inboundHTTPFilters(containerPort int) []*hcm.HttpFilter {
	var out []*hcm.HttpFilter
	if f := b.jwtFilter(); f != nil {
		out = append(out, f)
	}
	return append(out, b.httpRBACFilters(containerPort)...)
}

// withHTTPFilters puts filters before the router.
func (b *builder) withHTTPFilters(filters []*hcm.HttpFilter) func(*hcm.HttpConnectionManager) {
	return func(m *hcm.HttpConnectionManager) {
		m.HttpFilters = append(append([]*hcm.HttpFilter(nil), filters...), m.HttpFilters...)
	}
}

// listener wraps network filters (the terminal one last) in the single filter chain
// the proxy accepts.
func (b *builder) listener(name string, port int, filters ...*listener.Filter) *listener.Listener {
	return &listener.Listener{
		Name:         name,
		Address:      socketAddress(b.proxy.IP, port),
		StatPrefix:   name,
		FilterChains: []*listener.FilterChain{{Filters: filters}},
	}
}

// httpConnectionManager uses the inline route when given, else RDS over ADS with the
// listener's name; opts adjust the manager before it is packed.
func (b *builder) httpConnectionManager(name string, inline *route.RouteConfiguration, opts ...func(*hcm.HttpConnectionManager)) *listener.Filter {
	m := &hcm.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		HttpFilters: []*hcm.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(&router.Router{})},
		}},
	}
	for _, o := range opts {
		o(m)
	}
	if inline != nil {
		m.RouteSpecifier = &hcm.HttpConnectionManager_RouteConfig{RouteConfig: inline}
	} else {
		m.RouteSpecifier = &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: name,
		}}
	}
	return &listener.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: b.toAny(m)}}
}

func (b *builder) tcpProxy(name string, dests []weightedCluster) *listener.Filter {
	p := &tcp.TcpProxy{StatPrefix: name}
	if len(dests) == 1 {
		p.ClusterSpecifier = &tcp.TcpProxy_Cluster{Cluster: dests[0].name}
	} else {
		wc := &tcp.TcpProxy_WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &tcp.TcpProxy_WeightedCluster_ClusterWeight{Name: d.name, Weight: uint32(d.weight)})
		}
		p.ClusterSpecifier = &tcp.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listener.Filter{Name: wellknown.TCPProxy, ConfigType: &listener.Filter_TypedConfig{TypedConfig: b.toAny(proto.Message(p))}}
}

// upstream is a local port the runtime allocated to reach one service port.
type upstream struct {
	sp        servicePort
	localPort int
}

// upstreams resolves the proxy's UpstreamPorts, sorted by key. Keys naming a service
// port that is not (or no longer) in the mesh are skipped: the runtime may still hold a
// port for a service whose config was just removed.
func (b *builder) upstreams() []upstream {
	if b.proxy == nil {
		return nil
	}
	keys := make([]string, 0, len(b.proxy.UpstreamPorts))
	for k := range b.proxy.UpstreamPorts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []upstream
	for _, k := range keys {
		host, port, ok := splitUpstreamKey(k)
		if !ok {
			continue
		}
		sp, ok := b.servicePort(host, port)
		if !ok {
			continue
		}
		out = append(out, upstream{sp: sp, localPort: b.proxy.UpstreamPorts[k]})
	}
	return out
}
