package translate

import (
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
)

// VirtualService tls routes (TLS passthrough by SNI). Each applicable route of a
// service port becomes a filter chain matching the ClientHello's server names
// (`server_names`, `transport_protocol: tls`) whose tcp_proxy goes to the route's
// destinations; the port's own chain (tcp routes, else the service) stays the fallback,
// for plaintext and for other names, as Envoy's most-specific-match picks chains. The
// listener runs tls_inspector to read the SNI.

// sniRoute is one tls route for a service port.
type sniRoute struct {
	serverNames []string // empty: any name ("*")
	dests       []weightedCluster
}

// tlsRoutes returns the tls routes of the service port's VirtualService that apply
// to it (port, destination subnets and source as tcp routes), in order.
func (b *builder) tlsRoutes(sp servicePort) ([]sniRoute, error) {
	vs := b.virtualServiceFor(sp.host)
	if vs == nil {
		return nil, nil
	}
	var out []sniRoute
	seen := map[string]bool{}
	for _, r := range vs.TLS {
		if (r.Port != 0 && r.Port != sp.port.Port) || !r.Applies(sp.svc.VIP, b.proxy) {
			continue
		}
		dests, err := b.destinationClusters(vs, r.Destinations, sp)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, h := range r.SNIHosts {
			// The first route naming a server name wins it (first match wins); "*"
			// matches any name.
			if h == "*" {
				names = nil
				break
			}
			if !seen[h] {
				seen[h] = true
				names = append(names, h)
			}
		}
		if len(names) == 0 && !contains(r.SNIHosts, "*") {
			continue
		}
		out = append(out, sniRoute{serverNames: names, dests: dests})
		if names == nil {
			break // a "*" route catches every later TLS connection
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sniChains are the filter chains of a service port's tls routes, each matching base
// (port and VIP) plus server names and TLS.
func (b *builder) sniChains(sp servicePort, base *listener.FilterChainMatch) ([]*listener.FilterChain, error) {
	routes, err := b.tlsRoutes(sp)
	if err != nil {
		return nil, err
	}
	var out []*listener.FilterChain
	name := OutboundClusterName(sp.port.Port, "", sp.host)
	for i, r := range routes {
		m := &listener.FilterChainMatch{TransportProtocol: "tls", ServerNames: r.serverNames}
		if base != nil {
			m.DestinationPort, m.PrefixRanges = base.DestinationPort, base.PrefixRanges
		}
		chain := name + "|tls|" + itoa(i)
		out = append(out, filterChain(chain, m, b.tcpProxy(chain, r.dests)))
	}
	return out, nil
}

// tlsInspector is the listener filter that reads the ClientHello.
func (b *builder) tlsInspector() *listener.ListenerFilter {
	return &listener.ListenerFilter{Name: wellKnownTLSInspector, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&tlsinspector.TlsInspector{})}}
}
