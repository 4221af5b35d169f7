// Package forward is the proxy's data path: the immutable compiled configuration, the
// HTTP forwarder (HTTP/1.1 and h2c, gRPC-aware errors) and the TCP proxy. Handlers load
// the current *Config once per request or connection, so in-flight work finishes on the
// config it started with while a new one is swapped in.
package forward

import (
	"skein.dev/skein/internal/proxy/filter"
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

// Listener is a compiled listener: Routes for HTTP, TCP for tcp_proxy.
type Listener struct {
	Name    string
	Address string
	Codec   resource.Codec
	Routes  *route.Table
	TCP     *TCPRoute
	// NetworkFilters run on each connection (TCP) or request (HTTP) before anything
	// else; HTTPFilters run on each request before the router (filters.go).
	NetworkFilters []filter.Network
	HTTPFilters    []filter.HTTP
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
func Compile(u xdsclient.Update, prev *Config) *Config { return CompileWith(u, prev, FilterDeps{}) }

// CompileWith is Compile with what the listeners' filters need.
func CompileWith(u xdsclient.Update, prev *Config, deps FilterDeps) *Config {
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
	for name, l := range u.Listeners {
		cl := &Listener{Name: name, Address: l.Address, NetworkFilters: compileNetworkFilters(name, l.Filters, deps)}
		switch {
		case l.HTTP != nil:
			cl.Codec = l.HTTP.Codec
			cl.HTTPFilters = compileHTTPFilters(name, l.HTTP.Filters, deps)
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
	return cfg
}
