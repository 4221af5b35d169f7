package translate

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dnstable "github.com/envoyproxy/go-control-plane/envoy/data/dns/v3"
	httpinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	dnsfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/dns_filter/v3"
	cares "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/capture"
	"skein.dev/skein/internal/model"
)

// Transparent capture (CaptureIPTables): the pod's traffic is redirected by iptables
// (internal/capture) and the sidecar has Istio's two capture listeners plus a DNS one
// (docs/XDS.md "Capture mode"):
//
//   - virtualOutbound (0.0.0.0:15001): original_dst restores the destination; one
//     filter chain per TCP service VIP:port, a port-wide HTTP chain per port with HTTP
//     services (RDS named after the port: the Host header picks the virtual host), and
//     for services without a declared protocol a sniffed pair (HTTP chain when
//     http_inspector sees HTTP, else TCP) bounded by the protocol detection timeout;
//     anything else takes the default chain: PassthroughCluster (ALLOW_ANY) or
//     BlackHoleCluster (REGISTRY_ONLY).
//   - virtualInbound (0.0.0.0:15006): one chain per container port (sniffed pairs for
//     undeclared ones) with the very filters CaptureNone's inbound listeners have, and
//     InboundPassthroughClusterIpv4 for other ports.
//   - dns_proxy (127.0.0.1:15053/udp): Envoy's DNS filter with every service's names
//     and VIP; other names are forwarded to the resolvers of the pod's resolv.conf.
//
// Rather than Istio's per-port listeners that virtualOutbound hands connections to
// (use_original_dst, bind_to_port false), everything is filter chains of one listener:
// the same Envoy semantics with fewer moving parts.

// Capture-mode names, as Istio's where Istio has them.
const (
	VirtualOutboundName          = "virtualOutbound"
	VirtualInboundName           = "virtualInbound"
	DNSListenerName              = "dns_proxy"
	PassthroughClusterName       = "PassthroughCluster"
	BlackHoleClusterName         = "BlackHoleCluster"
	InboundPassthroughName       = "InboundPassthroughClusterIpv4"
	PassthroughFilterChainName   = "PassthroughFilterChain"
	InboundPassthroughChainName  = "InboundPassthroughFilterChain"
	AllowAnyVirtualHostName      = "allow_any"
	BlockAllVirtualHostName      = "block_all"
	dnsAnswerTTL                 = 30 * time.Second
	dnsResolverTimeout           = 5 * time.Second
	wellKnownOriginalDst         = "envoy.filters.listener.original_dst"
	wellKnownTLSInspector        = "envoy.filters.listener.tls_inspector"
	wellKnownHTTPInspector       = "envoy.filters.listener.http_inspector"
	wellKnownDNSFilter           = "envoy.filters.udp.dns_filter"
	wellKnownCaresResolver       = "envoy.network.dns_resolver.cares"
	allInterfaces                = "0.0.0.0"
	dnsListenerAddress           = "127.0.0.1"
	inboundPassthroughBindSource = capture.InboundPassthroughSource
)

// sniffedProtocols are the application protocols http_inspector reports for HTTP.
var sniffedProtocols = []string{"http/1.1", "http/1.0", "h2c"}

// OutboundRouteName is the RDS name of a capture-mode port's HTTP routes: the port.
func OutboundRouteName(port int) string { return strconv.Itoa(port) }

// capture reports whether the proxy is in transparent capture mode.
func (b *builder) capture() bool {
	return b.proxy != nil && b.proxy.Capture == model.CaptureIPTables
}

// portGroup is every service port with one port number.
type portGroup struct {
	port               int
	http, tcp, unknown []servicePort
}

// portGroups groups the service ports by number, sorted; each group's ports are sorted
// by host (b.ports is).
func (b *builder) portGroups() []portGroup {
	byPort := map[int]*portGroup{}
	for _, sp := range b.ports {
		g := byPort[sp.port.Port]
		if g == nil {
			g = &portGroup{port: sp.port.Port}
			byPort[sp.port.Port] = g
		}
		switch p := sp.port.Protocol; {
		case p.IsHTTP():
			g.http = append(g.http, sp)
		case p == model.ProtocolUnknown:
			g.unknown = append(g.unknown, sp)
		default:
			g.tcp = append(g.tcp, sp)
		}
	}
	out := make([]portGroup, 0, len(byPort))
	for _, g := range byPort {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
}

func (b *builder) captureListeners() ([]types.Resource, error) {
	out, err := b.virtualOutbound()
	if err != nil {
		return nil, err
	}
	return sortByName([]*listener.Listener{out, b.virtualInbound(), b.dnsListener()}), nil
}

func (b *builder) virtualOutbound() (*listener.Listener, error) {
	var chains []*listener.FilterChain
	var sniffed []int
	for _, g := range b.portGroups() {
		anyAddress := entryPortChain(g.tcp)
		g.tcp, g.unknown = withVIP(g.tcp), withVIP(g.unknown)
		if anyAddress != nil {
			g.tcp = append(g.tcp, *anyAddress)
		}
		for _, sp := range g.tcp {
			dests, err := b.tcpDestinations(sp)
			if err != nil {
				return nil, err
			}
			name := OutboundClusterName(sp.port.Port, "", sp.host)
			sni, err := b.sniChains(sp, vipMatch(sp, nil))
			if err != nil {
				return nil, err
			}
			if len(sni) > 0 && !slices.Contains(sniffed, g.port) {
				sniffed = append(sniffed, g.port) // the inspectors read the SNI
			}
			chains = append(append(chains, sni...), filterChain(name, vipMatch(sp, nil), b.tcpProxy(name, dests)))
		}
		for _, sp := range g.unknown {
			dests, err := b.tcpDestinations(sp)
			if err != nil {
				return nil, err
			}
			name := OutboundClusterName(sp.port.Port, "", sp.host)
			route := OutboundRouteName(g.port)
			chains = append(chains,
				filterChain(name+"|http", vipMatch(sp, sniffedProtocols), b.httpConnectionManager(route, nil, b.withHTTPFilters(b.outboundHTTPFilters()))),
				filterChain(name, vipMatch(sp, nil), b.tcpProxy(name, dests)))
		}
		if len(g.unknown) > 0 && !slices.Contains(sniffed, g.port) {
			sniffed = append(sniffed, g.port)
		}
		if len(g.http) > 0 {
			route := OutboundRouteName(g.port)
			chains = append(chains, filterChain(allInterfaces+"_"+route,
				&listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(g.port))},
				b.httpConnectionManager(route, nil, b.withHTTPFilters(b.outboundHTTPFilters()))))
		}
	}
	passthrough := PassthroughClusterName
	if b.mesh.RegistryOnly() {
		passthrough = BlackHoleClusterName
	}
	l := &listener.Listener{
		Name:               VirtualOutboundName,
		Address:            socketAddress(allInterfaces, capture.DefaultOutboundPort),
		StatPrefix:         VirtualOutboundName,
		TrafficDirection:   core.TrafficDirection_OUTBOUND,
		FilterChains:       chains,
		DefaultFilterChain: filterChain(PassthroughFilterChainName, nil, b.tcpProxy(passthrough, []weightedCluster{{name: passthrough, weight: 100}})),
		ListenerFilters:    b.listenerFilters(sniffed),
	}
	b.detectionTimeout(l, sniffed)
	return l, nil
}

func (b *builder) virtualInbound() *listener.Listener {
	var chains []*listener.FilterChain
	var sniffed []int
	anyTLS := false
	for _, cp := range b.inboundPorts() {
		name := InboundClusterName(cp)
		mode := model.MTLSDisable
		if b.secure() {
			mode = b.inboundMode(cp)
		}
		match := func(transport string, protocols []string) *listener.FilterChainMatch {
			return &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(cp)), TransportProtocol: transport, ApplicationProtocols: protocols}
		}
		declared := b.declaredInboundProtocol(cp)
		if declared == model.ProtocolUnknown {
			sniffed = append(sniffed, cp)
		}
		if mode != model.MTLSDisable {
			// Under mTLS the protocol cannot be sniffed before TLS ends: an undeclared
			// port's mTLS traffic is proxied as TCP.
			anyTLS = true
			chains = append(chains, b.mtlsChain(name+"mtls", match("", nil), b.inboundFilters(cp, declared.IsHTTP()), declared.IsHTTP()))
			if mode == model.MTLSStrict {
				continue // plaintext to this port matches no chain: refused
			}
		}
		plainTransport := ""
		if mode != model.MTLSDisable {
			plainTransport = "raw_buffer"
		}
		if declared == model.ProtocolUnknown {
			chains = append(chains,
				filterChain(name+"http", match(plainTransport, sniffedProtocols), b.inboundFilters(cp, true)...),
				filterChain(name, match(plainTransport, nil), b.inboundFilters(cp, false)...))
			continue
		}
		chains = append(chains, filterChain(name, match(plainTransport, nil), b.inboundFilters(cp, declared.IsHTTP())...))
	}
	// Other ports pass through to the app at their original destination, under the
	// workload's mode: a chain without destination_port, so a connection to a
	// declared port that its chains refuse (plaintext under STRICT) cannot fall back
	// to it, as Envoy never backtracks.
	// Authorization applies there too (network RBAC before tcp_proxy, as Istio does).
	passthrough := append(b.networkRBACFilters(0), b.tcpProxy(InboundPassthroughName, []weightedCluster{{name: InboundPassthroughName, weight: 100}}))
	mode := model.MTLSDisable
	if b.secure() {
		mode = b.inboundMode(0)
	}
	switch mode {
	case model.MTLSDisable:
		chains = append(chains, filterChain(InboundPassthroughChainName, nil, passthrough...))
	default:
		anyTLS = true
		chains = append(chains, b.mtlsChain(InboundPassthroughChainName+"-mtls", &listener.FilterChainMatch{}, passthrough, false))
		if mode == model.MTLSPermissive {
			chains = append(chains, filterChain(InboundPassthroughChainName, &listener.FilterChainMatch{TransportProtocol: "raw_buffer"}, passthrough...))
		}
	}
	l := &listener.Listener{
		Name:             VirtualInboundName,
		Address:          socketAddress(allInterfaces, capture.DefaultInboundPort),
		StatPrefix:       VirtualInboundName,
		TrafficDirection: core.TrafficDirection_INBOUND,
		FilterChains:     chains,
		ListenerFilters:  b.inboundListenerFilters(sniffed, anyTLS),
	}
	if len(sniffed) > 0 || anyTLS {
		l.ListenerFiltersTimeout = durationpb.New(b.mesh.DetectionTimeout())
		l.ContinueOnListenerFiltersTimeout = true
	}
	return l
}

// inboundListenerFilters: original_dst; with mTLS on any port the TLS inspector on
// every connection (a silent client is plaintext after the detection timeout); the
// HTTP inspector only on sniffed ports.
func (b *builder) inboundListenerFilters(sniffed []int, anyTLS bool) []*listener.ListenerFilter {
	out := b.listenerFilters(sniffed)
	if !anyTLS {
		return out
	}
	for _, f := range out {
		if f.Name == wellKnownTLSInspector {
			f.FilterDisabled = nil
			return out
		}
	}
	tls := &listener.ListenerFilter{Name: wellKnownTLSInspector, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&tlsinspector.TlsInspector{})}}
	return append(out[:1], append([]*listener.ListenerFilter{tls}, out[1:]...)...)
}

// listenerFilters: original_dst always; the inspectors only for the sniffed ports
// (filter_disabled everywhere else), so declared ports and passthrough traffic never
// wait for a detection timeout.
func (b *builder) listenerFilters(sniffed []int) []*listener.ListenerFilter {
	out := []*listener.ListenerFilter{{
		Name:       wellKnownOriginalDst,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&origdst.OriginalDst{})},
	}}
	if len(sniffed) == 0 {
		return out
	}
	var only *listener.ListenerFilterChainMatchPredicate
	rules := make([]*listener.ListenerFilterChainMatchPredicate, 0, len(sniffed))
	for _, p := range sniffed {
		rules = append(rules, &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p + 1)},
		}})
	}
	if len(rules) == 1 {
		only = rules[0]
	} else {
		only = &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_OrMatch{
			OrMatch: &listener.ListenerFilterChainMatchPredicate_MatchSet{Rules: rules},
		}}
	}
	disabled := &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: only}}
	return append(out,
		&listener.ListenerFilter{Name: wellKnownTLSInspector, FilterDisabled: disabled,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&tlsinspector.TlsInspector{})}},
		&listener.ListenerFilter{Name: wellKnownHTTPInspector, FilterDisabled: disabled,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&httpinspector.HttpInspector{})}},
	)
}

// detectionTimeout sets the inspectors' wait (the mesh's protocol detection timeout,
// 0 meaning none) and lets the connection go on as opaque TCP when it passes.
func (b *builder) detectionTimeout(l *listener.Listener, sniffed []int) {
	if len(sniffed) == 0 {
		return
	}
	l.ListenerFiltersTimeout = durationpb.New(b.mesh.DetectionTimeout())
	l.ContinueOnListenerFiltersTimeout = true
}

func filterChain(name string, match *listener.FilterChainMatch, f ...*listener.Filter) *listener.FilterChain {
	return &listener.FilterChain{Name: name, FilterChainMatch: match, Filters: f}
}

// withVIP keeps the service ports that have a VIP no earlier one has (a duplicate
// spec.clusterIP would make two chains with the same match, which Envoy rejects).
func withVIP(sps []servicePort) []servicePort {
	var out []servicePort
	seen := map[string]bool{}
	for _, sp := range sps {
		if sp.svc.VIP == "" || seen[sp.svc.VIP] {
			continue
		}
		seen[sp.svc.VIP] = true
		out = append(out, sp)
	}
	return out
}

// vipMatch matches connections to a service port's VIP.
func vipMatch(sp servicePort, protocols []string) *listener.FilterChainMatch {
	m := &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(sp.port.Port)), ApplicationProtocols: protocols}
	if a, err := netip.ParseAddr(sp.svc.VIP); err == nil {
		m.PrefixRanges = []*core.CidrRange{{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}}
	}
	return m
}

// captureRoutes: one RDS per port with HTTP or sniffed services, named after the port.
// The Host header picks the virtual host; a Host no service claims goes to the
// passthrough (or blackhole) virtual host.
func (b *builder) captureRoutes() ([]types.Resource, error) {
	var out []*route.RouteConfiguration
	for _, g := range b.portGroups() {
		sps := append(append([]servicePort(nil), g.http...), g.unknown...)
		if len(sps) == 0 {
			continue
		}
		sort.Slice(sps, func(i, j int) bool { return sps[i].host < sps[j].host })
		rc := &route.RouteConfiguration{Name: OutboundRouteName(g.port)}
		for _, sp := range sps {
			sp := sp
			vh, err := b.virtualHost(sp, "capture|"+b.domainsVariant(sp), func() []string { return b.captureDomains(sp) })
			if err != nil {
				return nil, err
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, b.fallbackVirtualHost())
		out = append(out, rc)
	}
	return sortByName(out), nil
}

// captureDomains: every Host form of the service port, with and without the port (the
// route is for one port only), and its VIP.
func (b *builder) captureDomains(sp servicePort) []string {
	name, ns := sp.svc.Name, sp.svc.Namespace
	hosts := []string{sp.host}
	if sp.svc.Entry == nil { // a ServiceEntry host has no short forms
		if b.proxy.Workload.Namespace == ns {
			hosts = append(hosts, name)
		}
		hosts = append(hosts, name+"."+ns, name+"."+ns+".svc")
	}
	if sp.svc.VIP != "" {
		hosts = append(hosts, sp.svc.VIP)
	}
	port := ":" + strconv.Itoa(sp.port.Port)
	out := make([]string, 0, 2*len(hosts))
	for _, h := range hosts {
		out = append(out, h, h+port)
	}
	return out
}

func (b *builder) fallbackVirtualHost() *route.VirtualHost {
	name, cluster := AllowAnyVirtualHostName, PassthroughClusterName
	if b.mesh.RegistryOnly() {
		// As Istio: an HTTP request for a host no service or ServiceEntry claims is
		// answered 502 by the sidecar itself (TCP goes to BlackHoleCluster instead).
		return &route.VirtualHost{
			Name:    BlockAllVirtualHostName,
			Domains: []string{"*"},
			Routes: []*route.Route{{
				Name:   BlockAllVirtualHostName,
				Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{Status: 502}},
			}},
		}
	}
	return &route.VirtualHost{
		Name:    name,
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:  name,
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cluster},
				Timeout:          durationpb.New(0),
			}},
		}},
	}
}

// captureClusters are Istio's: PassthroughCluster (ORIGINAL_DST: wherever the app was
// going), BlackHoleCluster (no endpoints: refused), InboundPassthroughClusterIpv4
// (inbound traffic for an undeclared port, to the app at its original destination,
// from 127.0.0.6 so the capture rules let it through).
func (b *builder) captureClusters() []*cluster.Cluster {
	original := func(name string) *cluster.Cluster {
		return &cluster.Cluster{
			Name:                          name,
			ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
			ConnectTimeout:                durationpb.New(ConnectTimeout),
			LbPolicy:                      cluster.Cluster_CLUSTER_PROVIDED,
			TypedExtensionProtocolOptions: b.inboundProtocolOptions(model.ProtocolHTTP),
		}
	}
	inbound := original(InboundPassthroughName)
	inbound.UpstreamBindConfig = &core.BindConfig{SourceAddress: &core.SocketAddress{
		Address: inboundPassthroughBindSource, PortSpecifier: &core.SocketAddress_PortValue{PortValue: 0},
	}}
	return []*cluster.Cluster{
		original(PassthroughClusterName),
		{
			Name:                 BlackHoleClusterName,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(ConnectTimeout),
		},
		inbound,
	}
}

// dnsListener answers every service's names with its VIP: the FQDN, name.ns.svc,
// name.ns, and the short name for services of the proxy's namespace. Other names are
// forwarded to the resolvers of the pod's /etc/resolv.conf (c-ares without resolvers).
func (b *builder) dnsListener() *listener.Listener {
	var domains []*dnstable.DnsTable_DnsVirtualDomain
	seen := map[string]bool{}
	svcs := append([]*model.Service(nil), b.mesh.Services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Hostname(b.suffix) < svcs[j].Hostname(b.suffix) })
	for _, s := range svcs {
		if s.VIP == "" {
			continue
		}
		names := []string{s.Hostname(b.suffix), s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace}
		if s.Namespace == b.proxy.Workload.Namespace {
			names = append(names, s.Name)
		}
		if s.Entry != nil {
			if !s.Entry.ExportedTo(b.proxy.Workload.Namespace) {
				continue
			}
			names = entryDNSNames(s)
		}
		for _, n := range names {
			if seen[n] {
				continue
			}
			seen[n] = true
			domains = append(domains, &dnstable.DnsTable_DnsVirtualDomain{
				Name: n,
				Endpoint: &dnstable.DnsTable_DnsEndpoint{EndpointConfig: &dnstable.DnsTable_DnsEndpoint_AddressList{
					AddressList: &dnstable.DnsTable_AddressList{Address: []string{s.VIP}},
				}},
				AnswerTtl: durationpb.New(dnsAnswerTTL),
			})
		}
	}
	cfg := &dnsfilter.DnsFilterConfig{
		StatPrefix: "dns",
		ServerConfig: &dnsfilter.DnsFilterConfig_ServerContextConfig{ConfigSource: &dnsfilter.DnsFilterConfig_ServerContextConfig_InlineDnsTable{
			InlineDnsTable: &dnstable.DnsTable{VirtualDomains: domains},
		}},
		ClientConfig: &dnsfilter.DnsFilterConfig_ClientContextConfig{
			ResolverTimeout: durationpb.New(dnsResolverTimeout),
			TypedDnsResolverConfig: &core.TypedExtensionConfig{
				Name:        wellKnownCaresResolver,
				TypedConfig: b.toAny(&cares.CaresDnsResolverConfig{}),
			},
		},
	}
	return &listener.Listener{
		Name: DNSListenerName,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Protocol:      core.SocketAddress_UDP,
			Address:       dnsListenerAddress,
			PortSpecifier: &core.SocketAddress_PortValue{PortValue: capture.DefaultDNSPort},
		}}},
		StatPrefix: DNSListenerName,
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       wellKnownDNSFilter,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(cfg)},
		}},
	}
}
