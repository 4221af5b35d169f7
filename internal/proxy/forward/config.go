// Package forward is the proxy's data path: the immutable compiled configuration, the
// HTTP forwarder (HTTP/1.1 and h2c, gRPC-aware errors) and the TCP proxy. Handlers load
// the current *Config once per request or connection, so in-flight work finishes on the
// config it started with while a new one is swapped in.
package forward

import (
	"errors"
	"fmt"
	"strings"

	"skein.dev/skein/internal/proxy/dns"
	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/filterchain"
	"skein.dev/skein/internal/proxy/listener"
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
	// routeTables are the compiled RDS tables, kept so the next compile can carry
	// their retry budgets over.
	routeTables map[string]*route.Table
}

// Listener is a compiled listener: its filter chains (TCP) or DNS table (UDP).
type Listener struct {
	Name      string
	Address   string
	Direction streaminfo.Direction
	UDP       bool
	DNS       *dns.Table
	Filters   resource.ListenerFilters

	matcher *filterchain.Matcher
	chains  []*Chain // aligned with the matcher
	def     *Chain
	byName  map[string]*Chain
}

// Chain is a compiled filter chain: how TLS ends on its connections, then Routes for
// an HTTP connection manager or TCP for a tcp_proxy.
type Chain struct {
	Name   string
	Codec  resource.Codec
	Routes *route.Table
	TCP    *TCPRoute
	// XFCC and XFCCDetails govern x-forwarded-client-cert (HTTP chains).
	XFCC        resource.ForwardClientCert
	XFCCDetails resource.ClientCertDetails
	// NetworkFilters run on each connection (TCP) or request (HTTP) before anything
	// else; HTTPFilters run on each request before the router (filters.go).
	NetworkFilters []filter.Network
	HTTPFilters    []filter.HTTP
	// CORS and Fault say whether the chain has those filters, which act on the matched
	// route's per-filter config (route_actions.go).
	CORS, Fault bool
	// TLS terminates TLS; nil means plaintext. Err is set instead when the chain's
	// TLS context could not be built: its connections are closed.
	TLS *tlsconf.Server
	Err error
}

// Chain returns the named chain, or nil.
func (l *Listener) Chain(name string) *Chain { return l.byName[name] }

// Select picks the chain for a connection (Envoy's filter chain match), falling back
// to the default chain; nil means the connection is closed.
func (l *Listener) Select(ci filterchain.ConnInfo) *Chain {
	if i := l.matcher.Select(ci); i >= 0 {
		return l.chains[i]
	}
	return l.def
}

// Chains returns every chain, the default last.
func (l *Listener) Chains() []*Chain {
	out := append([]*Chain(nil), l.chains...)
	if l.def != nil {
		out = append(out, l.def)
	}
	return out
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
	return CompileWith(u, prev, env, FilterDeps{})
}

// CompileWith is Compile with what the listeners' filters (filters.go) need.
func CompileWith(u xdsclient.Update, prev *Config, env tlsconf.Env, deps FilterDeps) (*Config, error) {
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
		var old *route.Table
		if prev != nil {
			old = prev.routeTables[name]
		}
		tables[name] = route.Compile(rc, old)
	}
	cfg.routeTables = tables
	for name, l := range u.Listeners {
		compileChain := func(c *resource.FilterChain) *Chain {
			cc := &Chain{Name: c.Name, NetworkFilters: compileNetworkFilters(name, c.Filters, deps)}
			if c.TLS != nil {
				if cc.TLS, cc.Err = tlsconf.NewServer(c.TLS, env); cc.Err != nil {
					errs = append(errs, fmt.Errorf("listener %s chain %q: %w", name, c.Name, cc.Err))
				}
			}
			if cc.TLS != nil && c.TLS.CertSecret == tlsconf.DefaultSecret {
				// Mesh mTLS: a TCP chain accepts the in-band metadata exchange
				// (exchange.go); an HTTP chain tolerates its offer.
				cc.TLS = cc.TLS.WithPeerExchange(c.TCP != nil)
			}
			switch {
			case c.HTTP != nil:
				cc.Codec = c.HTTP.Codec
				cc.XFCC, cc.XFCCDetails = c.HTTP.ForwardClientCert, c.HTTP.ClientCertDetails
				cc.HTTPFilters = compileHTTPFilters(name, c.HTTP.Filters, deps)
				for _, f := range c.HTTP.Filters {
					cc.CORS = cc.CORS || f.CORS
					cc.Fault = cc.Fault || f.Fault
				}
				if c.HTTP.Inline != nil {
					cc.Routes = route.New(c.HTTP.Inline)
				} else {
					cc.Routes = tables[c.HTTP.RDSName]
				}
			case c.TCP != nil:
				cumul, total := route.Cumulative(c.TCP.Clusters)
				cc.TCP = &TCPRoute{Clusters: c.TCP.Clusters, cumul: cumul, total: total}

			}
			return cc
		}
		cl := &Listener{Name: name, Address: l.Address, Direction: direction(l), UDP: l.UDP, Filters: l.ListenerFilters, byName: map[string]*Chain{}}
		if l.DNS != nil {
			cl.DNS = dns.Compile(l.DNS)
		}
		matches := make([]resource.FilterChainMatch, 0, len(l.FilterChains))
		for _, c := range l.FilterChains {
			cc := compileChain(c)
			cl.chains = append(cl.chains, cc)
			cl.byName[cc.Name] = cc
			matches = append(matches, c.Match)
		}
		cl.matcher = filterchain.New(matches)
		if l.DefaultChain != nil {
			cl.def = compileChain(l.DefaultChain)
			cl.byName[cl.def.Name] = cl.def
		}
		cfg.Listeners[name] = cl
	}
	return cfg, errors.Join(errs...)
}

// ListenerFilters implements listener.Listener.
func (l *Listener) ListenerFilters() resource.ListenerFilters { return l.Filters }

// SelectChain implements listener.Listener.
func (l *Listener) SelectChain(ci filterchain.ConnInfo) (listener.Chain, bool) {
	c := l.Select(ci)
	if c == nil {
		return listener.Chain{}, false
	}
	return listener.Chain{Name: c.Name, HTTP: c.Routes != nil || c.TCP == nil, Codec: c.Codec}, true
}

var _ listener.Listener = (*Listener)(nil)

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
		use := u
		if u.CertSecret == tlsconf.DefaultSecret && len(u.ALPN) == 0 {
			// Mesh mTLS without an application protocol (TCP): offer the in-band
			// metadata exchange to the peer sidecar (exchange.go).
			cp := *u
			cp.ALPN = []string{tlsconf.PeerExchangeALPN}
			use = &cp
		}
		c, err := tlsconf.NewClient(use, env)
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
