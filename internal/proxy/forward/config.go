// Package forward is the proxy's data path: the immutable compiled configuration, the
// HTTP forwarder (HTTP/1.1 and h2c, gRPC-aware errors) and the TCP proxy. Handlers load
// the current *Config once per request or connection, so in-flight work finishes on the
// config it started with while a new one is swapped in.
package forward

import (
	"strings"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
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
	for name, l := range u.Listeners {
		cl := &Listener{Name: name, Address: l.Address, Direction: direction(l)}
		switch {
		case l.HTTP != nil:
			cl.Codec = l.HTTP.Codec
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
