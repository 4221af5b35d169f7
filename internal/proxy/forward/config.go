// Package forward is the proxy's data path: the immutable compiled configuration, the
// HTTP forwarder (HTTP/1.1 and h2c, gRPC-aware errors) and the TCP proxy. Handlers load
// the current *Config once per request or connection, so in-flight work finishes on the
// config it started with while a new one is swapped in.
package forward

import (
	"errors"
	"fmt"
	"strings"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/upstream"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// Config is one compiled, immutable set of listeners, routes and clusters.
type Config struct {
	Listeners map[string]*Listener
	Clusters  map[string]*upstream.Cluster
}

// Listener is a compiled listener: Routes for HTTP, TCP for tcp_proxy.
type Listener struct {
	Name      string
	Address   string
	Direction streaminfo.Direction
	Codec     resource.Codec
	Routes    *route.Table
	TCP       *TCPRoute
	// Secure: connections need inspection, TLS termination or a chain choice before
	// the filters (see Chain).
	Secure       bool
	TLSInspector bool
	Chains       []Chain
	// XFCC and XFCCDetails govern x-forwarded-client-cert (HTTP listeners).
	XFCC        resource.ForwardClientCert
	XFCCDetails resource.ClientCertDetails
}

// Chain is a compiled filter chain: which connections it takes and how TLS ends.
type Chain struct {
	Name              string
	TransportProtocol string
	// TLS terminates TLS; nil means plaintext. Err is set instead when the chain's
	// TLS context could not be built: its connections are closed.
	TLS *tlsconf.Server
	Err error
}

// SelectChain picks the chain for a connection whose transport protocol is "tls" or
// "raw_buffer", as Envoy does; nil means none matches and the connection is closed.
func (l *Listener) SelectChain(transport string) *Chain {
	var any *Chain
	for i := range l.Chains {
		c := &l.Chains[i]
		switch c.TransportProtocol {
		case transport:
			return c
		case "":
			any = c
		}
	}
	return any
}

// TCPRoute is a compiled tcp_proxy.
type TCPRoute struct {
	Clusters []resource.WeightedCluster
	cumul    []uint64
	total    uint64
}

// PickCluster chooses a cluster by weight.
func (t *TCPRoute) PickCluster() string { return route.PickWeighted(t.Clusters, t.cumul, t.total) }

// Compile builds a Config from a complete xDS update. prev (may be nil) lends its
// load-balancing state to clusters of the same name; env resolves TLS secrets. A TLS
// context that cannot be built (a secret missing) is reported in the returned error
// and its cluster endpoints or filter chain refuse connections; the rest works.
func Compile(u xdsclient.Update, prev *Config, env tlsconf.Env) (*Config, error) {
	if env.Secrets == nil {
		env.Secrets = u.Secrets
	}
	var errs []error
	cfg := &Config{
		Listeners: make(map[string]*Listener, len(u.Listeners)),
		Clusters:  make(map[string]*upstream.Cluster, len(u.Clusters)),
	}
	for name, def := range u.Clusters {
		var old *upstream.Cluster
		if prev != nil {
			old = prev.Clusters[name]
		}
		tlsFor, err := clusterTLS(def, env)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", name, err))
		}
		cfg.Clusters[name] = upstream.NewClusterTLS(def, u.Endpoints[name], old, tlsFor)
	}
	tables := make(map[string]*route.Table, len(u.Routes))
	for name, rc := range u.Routes {
		tables[name] = route.New(rc)
	}
	for name, l := range u.Listeners {
		cl := &Listener{Name: name, Address: l.Address, Direction: direction(l), Secure: l.Secure(), TLSInspector: l.TLSInspector}
		for _, ch := range l.Chains {
			c := Chain{Name: ch.Name, TransportProtocol: ch.TransportProtocol}
			if ch.TLS != nil {
				if c.TLS, c.Err = tlsconf.NewServer(ch.TLS, env); c.Err != nil {
					errs = append(errs, fmt.Errorf("listener %s chain %q: %w", name, ch.Name, c.Err))
				}
			}
			cl.Chains = append(cl.Chains, c)
		}
		switch {
		case l.HTTP != nil:
			cl.Codec = l.HTTP.Codec
			cl.XFCC, cl.XFCCDetails = l.HTTP.ForwardClientCert, l.HTTP.ClientCertDetails
			if l.HTTP.Inline != nil {
				cl.Routes = route.New(l.HTTP.Inline)
			} else {
				cl.Routes = tables[l.HTTP.RDSName]
			}
		case l.TCP != nil:
			cumul, total := route.Cumulative(l.TCP.Clusters)
			cl.TCP = &TCPRoute{Clusters: l.TCP.Clusters, cumul: cumul, total: total}
		}
		cfg.Listeners[name] = cl
	}
	return cfg, errors.Join(errs...)
}

// clusterTLS compiles a cluster's transport sockets once and returns which one each
// endpoint uses. A socket that cannot be built gives a Client that fails every
// handshake, so its endpoints answer 503 instead of falling back to plaintext.
func clusterTLS(def *resource.Cluster, env tlsconf.Env) (func(resource.Endpoint) *tlsconf.Client, error) {
	if def.TLS == nil && len(def.TLSMatches) == 0 {
		return nil, nil
	}
	clients := map[*resource.UpstreamTLS]*tlsconf.Client{}
	var errs []error
	build := func(u *resource.UpstreamTLS) {
		if u == nil || clients[u] != nil {
			return
		}
		c, err := tlsconf.NewClient(u, env)
		if err != nil {
			errs = append(errs, err)
			c = tlsconf.FailingClient(err)
		}
		clients[u] = c
	}
	build(def.TLS)
	for _, m := range def.TLSMatches {
		build(m.TLS)
	}
	return func(e resource.Endpoint) *tlsconf.Client { return clients[def.TLSFor(e)] }, errors.Join(errs...)
}

// direction is the listener's traffic_direction; when the control plane leaves it
// unspecified, Istio's listener names decide: "inbound|<port>" and "virtualInbound"
// serve the workload's callers, everything else its own calls.
func direction(l *resource.Listener) streaminfo.Direction {
	switch l.Direction {
	case resource.DirectionInbound:
		return streaminfo.Inbound
	case resource.DirectionOutbound:
		return streaminfo.Outbound
	}
	if strings.HasPrefix(l.Name, "inbound|") || strings.HasPrefix(l.Name, "virtualInbound") {
		return streaminfo.Inbound
	}
	return streaminfo.Outbound
}
