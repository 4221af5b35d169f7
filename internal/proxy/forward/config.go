// Package forward is the proxy's data path: the immutable compiled configuration, the
// HTTP forwarder (HTTP/1.1 and h2c, gRPC-aware errors) and the TCP proxy. Handlers load
// the current *Config once per request or connection, so in-flight work finishes on the
// config it started with while a new one is swapped in.
package forward

import (
	"skein.dev/skein/internal/proxy/dns"
	"skein.dev/skein/internal/proxy/filterchain"
	"skein.dev/skein/internal/proxy/listener"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/upstream"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// Config is one compiled, immutable set of listeners, routes and clusters.
type Config struct {
	Listeners map[string]*Listener
	Clusters  map[string]*upstream.Cluster
}

// Listener is a compiled listener: its filter chains (TCP) or DNS table (UDP).
type Listener struct {
	Name    string
	Address string
	UDP     bool
	DNS     *dns.Table
	Filters resource.ListenerFilters

	matcher *filterchain.Matcher
	chains  []*Chain // aligned with the matcher
	def     *Chain
	byName  map[string]*Chain
}

// Chain is a compiled filter chain: Routes for an HTTP connection manager, TCP for a
// tcp_proxy.
type Chain struct {
	Name   string
	Codec  resource.Codec
	Routes *route.Table
	TCP    *TCPRoute
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
// load-balancing state to clusters of the same name.
func Compile(u xdsclient.Update, prev *Config) *Config {
	cfg := &Config{
		Listeners: make(map[string]*Listener, len(u.Listeners)),
		Clusters:  make(map[string]*upstream.Cluster, len(u.Clusters)),
	}
	for name, def := range u.Clusters {
		var old *upstream.Cluster
		if prev != nil {
			old = prev.Clusters[name]
		}
		cfg.Clusters[name] = upstream.NewCluster(def, u.Endpoints[name], old)
	}
	tables := make(map[string]*route.Table, len(u.Routes))
	for name, rc := range u.Routes {
		tables[name] = route.New(rc)
	}
	compileChain := func(c *resource.FilterChain) *Chain {
		cc := &Chain{Name: c.Name}
		switch {
		case c.HTTP != nil:
			cc.Codec = c.HTTP.Codec
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
	for name, l := range u.Listeners {
		cl := &Listener{Name: name, Address: l.Address, UDP: l.UDP, Filters: l.ListenerFilters, byName: map[string]*Chain{}}
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
	return cfg
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
