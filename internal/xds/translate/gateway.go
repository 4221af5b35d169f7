package translate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// A gateway proxy (model.RoleGateway) serves the listeners of the gateways that select
// it: one Envoy listener per bind address and port; HTTP ports share one route
// configuration `http.<port>`; HTTPS and TLS listeners are filter chains chosen by SNI
// (tls_inspector), each HTTPS chain with its own route configuration
// `https.<port>.<listener>.<gateway>.<namespace>` that answers 421 to a Host its
// certificate was not chosen for; TLS passthrough chains and TCP listeners end in
// tcp_proxy. Clusters and endpoints are the mesh's outbound ones (docs/XDS.md).

// InvalidBackendCluster is the cluster name routes use for the share of traffic that
// goes to backendRefs that do not resolve: it never exists, and the route's
// cluster_not_found_response_code makes such requests 500, as the Gateway API requires.
const InvalidBackendCluster = "skein|invalid-backend"

// portKey is one socket a gateway proxy listens on.
type portKey struct {
	addr string
	port int
}

// gatewayPort is every gateway listener bound on one socket.
type gatewayPort struct {
	key       portKey
	listeners []gatewayListener
}

type gatewayListener struct {
	gw *model.Gateway
	l  *model.GatewayListener
}

func (b *builder) gatewayPorts() []gatewayPort {
	by := map[portKey]*gatewayPort{}
	for _, g := range b.mesh.GatewaysFor(b.proxy.Workload.Namespace, b.proxy.Labels) {
		for i := range g.Listeners {
			l := &g.Listeners[i]
			addr := l.Address
			if addr == "" {
				addr = "127.0.0.1"
			}
			k := portKey{addr, l.Port}
			if by[k] == nil {
				by[k] = &gatewayPort{key: k}
			}
			by[k].listeners = append(by[k].listeners, gatewayListener{g, l})
		}
	}
	out := make([]gatewayPort, 0, len(by))
	for _, p := range by {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key.port != out[j].key.port {
			return out[i].key.port < out[j].key.port
		}
		return out[i].key.addr < out[j].key.addr
	})
	return out
}

// GatewayListenerName is `<address>_<port>`, as Istio names gateway listeners.
func GatewayListenerName(addr string, port int) string {
	return addr + "_" + strconv.Itoa(port)
}

// GatewayHTTPRouteName is the route configuration of a plaintext HTTP port.
func GatewayHTTPRouteName(port int) string { return "http." + strconv.Itoa(port) }

// GatewayHTTPSRouteName is the route configuration of one HTTPS listener.
func GatewayHTTPSRouteName(port int, listener string, gw model.NamespacedName) string {
	return "https." + strconv.Itoa(port) + "." + listener + "." + gw.Name + "." + gw.Namespace
}

func (b *builder) gatewayListeners() ([]types.Resource, error) {
	var out []*listener.Listener
	for _, gp := range b.gatewayPorts() {
		name := GatewayListenerName(gp.key.addr, gp.key.port)
		l := &listener.Listener{Name: name, Address: socketAddress(gp.key.addr, gp.key.port), StatPrefix: name}
		first := gp.listeners[0].l
		switch first.Protocol {
		case model.GatewayHTTP:
			l.FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{b.httpConnectionManager(GatewayHTTPRouteName(gp.key.port), nil, b.withHTTPFilters(b.outboundHTTPFilters()))}}}
		case model.GatewayTCP:
			l.FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{b.tcpProxy(name, b.gatewayTCPClusters(first.TCP))}}}
		default: // HTTPS and TLS: chains by SNI
			l.ListenerFilters = []*listener.ListenerFilter{{
				Name:       ListenerTLSInspector,
				ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&tlsinspector.TlsInspector{})},
			}}
			for _, gl := range gp.listeners {
				l.FilterChains = append(l.FilterChains, b.gatewayTLSChains(gp, gl)...)
			}
		}
		if len(l.FilterChains) == 0 {
			continue // a passthrough port without routes: nothing to serve, not bound
		}
		out = append(out, l)
	}
	return sortByName(out), nil
}

// gatewayTLSChains are the filter chains of one HTTPS or TLS listener.
func (b *builder) gatewayTLSChains(gp gatewayPort, gl gatewayListener) []*listener.FilterChain {
	l := gl.l
	match := func(names []string) *listener.FilterChainMatch {
		m := &listener.FilterChainMatch{TransportProtocol: "tls"}
		for _, n := range names {
			if n != "*" && n != "" {
				m.ServerNames = append(m.ServerNames, n)
			}
		}
		return m
	}
	chainName := l.Name + "." + gl.gw.Name + "." + gl.gw.Namespace
	switch {
	case l.Protocol == model.GatewayHTTPS:
		rn := GatewayHTTPSRouteName(gp.key.port, l.Name, gl.gw.NamespacedName)
		return []*listener.FilterChain{{
			Name:             chainName,
			FilterChainMatch: match(l.Hostnames),
			Filters:          []*listener.Filter{b.httpConnectionManager(rn, nil, b.withHTTPFilters(b.outboundHTTPFilters()))},
			TransportSocket:  b.tlsSocket(b.gatewayServerTLS(l.TLS, alpnHTTP)),
		}}
	case l.TLS != nil: // TLS terminated, then TCP
		return []*listener.FilterChain{{
			Name:             chainName,
			FilterChainMatch: match(l.Hostnames),
			Filters:          []*listener.Filter{b.tcpProxy(chainName, b.gatewayTCPClusters(l.TCP))},
			TransportSocket:  b.tlsSocket(b.gatewayServerTLS(l.TLS, nil)),
		}}
	}
	// Passthrough: one chain per TLSRoute, by the route's hostnames (the listener's
	// when the route has none).
	var out []*listener.FilterChain
	for i, r := range l.TLSRoutes {
		names := r.Hostnames
		if len(names) == 0 {
			names = l.Hostnames
		}
		if len(r.Destinations) == 0 {
			continue
		}
		out = append(out, &listener.FilterChain{
			Name:             chainName + "." + strconv.Itoa(i),
			FilterChainMatch: match(names),
			Filters:          []*listener.Filter{b.tcpProxy(chainName, b.gatewayTCPClusters(r.Destinations))},
		})
	}
	return out
}

// gatewayServerTLS is the DownstreamTlsContext of a terminating listener: its own
// certificate inline, and for MUTUAL the client CA.
func (b *builder) gatewayServerTLS(t *model.GatewayTLS, alpn []string) *tlsv3.DownstreamTlsContext {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: alpn}}
	if t == nil {
		return ctx
	}
	switch t.Mode {
	case model.GatewayTLSIstioMutual:
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsConfigSource()}}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsConfigSource()},
		}
		return ctx
	}
	ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
		CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: []byte(t.CertChain)}},
		PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: []byte(t.Key)}},
	}}
	if t.Mode == model.GatewayTLSMutual {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: []byte(t.CACert)}},
			},
		}
	}
	return ctx
}

// gatewayTCPClusters resolves TCP destinations (ports are always given by the adapter).
func (b *builder) gatewayTCPClusters(dests []model.RouteDestination) []weightedCluster {
	if len(dests) == 0 {
		return []weightedCluster{{name: InvalidBackendCluster, weight: 1}}
	}
	out := make([]weightedCluster, 0, len(dests))
	for _, d := range dests {
		out = append(out, weightedCluster{name: OutboundClusterName(d.Port, d.Subset, d.Host), weight: d.Weight})
	}
	return out
}

func (b *builder) gatewayRoutes() ([]types.Resource, error) {
	var out []*route.RouteConfiguration
	for _, gp := range b.gatewayPorts() {
		switch gp.listeners[0].l.Protocol {
		case model.GatewayHTTP:
			rc := &route.RouteConfiguration{Name: GatewayHTTPRouteName(gp.key.port)}
			var vhosts []model.GatewayVirtualHost
			for _, gl := range gp.listeners {
				vhosts = append(vhosts, gl.l.VirtualHosts...)
			}
			var err error
			if rc.VirtualHosts, err = b.gatewayVirtualHosts(gp.key.port, mergeVirtualHosts(vhosts)); err != nil {
				return nil, err
			}
			out = append(out, rc)
		case model.GatewayHTTPS, model.GatewayTLSProtocol:
			for _, gl := range gp.listeners {
				if gl.l.Protocol != model.GatewayHTTPS {
					continue
				}
				rc := &route.RouteConfiguration{Name: GatewayHTTPSRouteName(gp.key.port, gl.l.Name, gl.gw.NamespacedName)}
				vhosts := mergeVirtualHosts(gl.l.VirtualHosts)
				var err error
				if rc.VirtualHosts, err = b.gatewayVirtualHosts(gp.key.port, vhosts); err != nil {
					return nil, err
				}
				rc.VirtualHosts = append(rc.VirtualHosts, misdirected(gl.l, vhosts)...)
				out = append(out, rc)
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	// Several listeners on one HTTP port across addresses share one route name.
	seen := map[string]bool{}
	uniq := out[:0]
	for _, rc := range out {
		if !seen[rc.Name] {
			seen[rc.Name] = true
			uniq = append(uniq, rc)
		}
	}
	return sortByName(uniq), nil
}

// mergeVirtualHosts joins virtual hosts of the same hostname (several listeners on one
// port), keeping each one's route order and dropping repeated routes.
func mergeVirtualHosts(in []model.GatewayVirtualHost) []model.GatewayVirtualHost {
	idx := map[string]int{}
	var out []model.GatewayVirtualHost
	names := map[string]map[string]bool{}
	for _, vh := range in {
		i, ok := idx[strings.ToLower(vh.Hostname)]
		if !ok {
			i = len(out)
			idx[strings.ToLower(vh.Hostname)] = i
			out = append(out, model.GatewayVirtualHost{Hostname: vh.Hostname})
			names[vh.Hostname] = map[string]bool{}
		}
		for _, r := range vh.Routes {
			key := r.Owner + "|" + r.Name
			if names[out[i].Hostname][key] {
				continue
			}
			names[out[i].Hostname][key] = true
			out[i].Routes = append(out[i].Routes, r)
		}
	}
	return out
}

// misdirected adds, for an HTTPS listener with hostnames, an empty virtual host for
// each of them (a request for a name the certificate covers but no route serves is a
// 404) and a catch-all answering 421: the connection's SNI chose this certificate, the
// Host header names another server.
func misdirected(l *model.GatewayListener, vhosts []model.GatewayVirtualHost) []*route.VirtualHost {
	if len(l.Hostnames) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, vh := range vhosts {
		have[strings.ToLower(vh.Hostname)] = true
	}
	var out []*route.VirtualHost
	for _, h := range l.Hostnames {
		if have[strings.ToLower(h)] || h == "*" {
			continue
		}
		out = append(out, &route.VirtualHost{Name: h, Domains: hostDomains(h)})
	}
	if have["*"] {
		return out
	}
	return append(out, &route.VirtualHost{
		Name:    "misdirected",
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:   "misdirected",
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{Status: 421}},
		}},
	})
}

// hostDomains are the Host header forms of a gateway hostname: as is and with any port.
func hostDomains(h string) []string {
	if h == "*" {
		return []string{"*"}
	}
	return []string{h, h + ":*"}
}

func (b *builder) gatewayVirtualHosts(port int, vhosts []model.GatewayVirtualHost) ([]*route.VirtualHost, error) {
	var out []*route.VirtualHost
	for _, vh := range vhosts {
		v := &route.VirtualHost{Name: vh.Hostname + ":" + strconv.Itoa(port), Domains: hostDomains(vh.Hostname)}
		for _, r := range vh.Routes {
			routes, err := b.gatewayRoute(r)
			if err != nil {
				return nil, err
			}
			v.Routes = append(v.Routes, routes...)
		}
		out = append(out, v)
	}
	return out, nil
}

// gatewayRoute is one Envoy route per match of a gateway route, with the route's
// actions (redirect, rewrite, header edits, mirrors, retries, CORS: route_actions.go,
// shared with VirtualService routes).
func (b *builder) gatewayRoute(r model.GatewayRoute) ([]*route.Route, error) {
	matches := r.Matches
	if len(matches) == 0 {
		matches = []model.HTTPMatch{{}}
	}
	var out []*route.Route
	for i, m := range matches {
		rm, err := routeMatch(m)
		if err != nil {
			return nil, fmt.Errorf("gateway route %s (%s): %w", r.Name, r.Owner, err)
		}
		name := r.Name
		if len(matches) > 1 {
			name += "." + strconv.Itoa(i)
		}
		rt := &route.Route{Name: name, Match: rm}
		if r.Redirect != nil {
			rt.Action = &route.Route_Redirect{Redirect: redirectAction(r.Redirect)}
		} else {
			b.setGatewayAction(rt, r)
		}
		b.applyRouteExtras(rt, r.HTTPRoute)
		out = append(out, rt)
	}
	return out, nil
}

// setGatewayAction sends to the route's backends by weight, the invalid share to
// InvalidBackendCluster (500); with no valid backend at all, a direct 500.
func (b *builder) setGatewayAction(rt *route.Route, r model.GatewayRoute) {
	if len(r.Destinations) == 0 {
		rt.Action = &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{Status: 500}}
		return
	}
	a := &route.RouteAction{Timeout: durationpb.New(r.Timeout), RetryPolicy: b.retryPolicy(r.Retries)}
	applyRewrite(a, r.Rewrite)
	for _, m := range r.Mirrors {
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, &route.RouteAction_RequestMirrorPolicy{
			Cluster:         OutboundClusterName(m.Destination.Port, m.Destination.Subset, m.Destination.Host),
			RuntimeFraction: &core.RuntimeFractionalPercent{DefaultValue: percent(m.Percent)},
		})
	}
	type wc struct {
		name    string
		weight  int
		headers *model.Headers
	}
	var wcs []wc
	for _, d := range r.Destinations {
		wcs = append(wcs, wc{OutboundClusterName(d.Port, d.Subset, d.Host), d.Weight, d.Headers})
	}
	if r.InvalidWeight > 0 {
		wcs = append(wcs, wc{name: InvalidBackendCluster, weight: r.InvalidWeight})
		a.ClusterNotFoundResponseCode = route.RouteAction_INTERNAL_SERVER_ERROR
	}
	if len(wcs) == 1 {
		// One destination: applyRouteExtras makes its header edits the route's.
		a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: wcs[0].name}
	} else {
		w := &route.WeightedCluster{}
		for _, c := range wcs {
			cw := &route.WeightedCluster_ClusterWeight{Name: c.name, Weight: wrapperspb.UInt32(uint32(c.weight))}
			if h := c.headers; !h.Empty() {
				cw.RequestHeadersToAdd = headerValueOptions(h.Request)
				cw.RequestHeadersToRemove = h.Request.Remove
				cw.ResponseHeadersToAdd = headerValueOptions(h.Response)
				cw.ResponseHeadersToRemove = h.Response.Remove
			}
			w.Clusters = append(w.Clusters, cw)
		}
		a.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: w}
	}
	rt.Action = &route.Route_Route{Route: a}
}
