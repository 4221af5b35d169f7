package forward

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
	"skein.dev/skein/internal/proxy/upstream"
)

// Explanation is the decision trace of one request on this proxy's compiled config:
// what `skein explain` prints. It is computed by the same route selection the request
// path runs (route.Table.Select with a Trace), on the config in effect now.
type Explanation struct {
	Listener           string       `json:"listener"`
	ListenerAddress    string       `json:"listenerAddress,omitempty"`
	ListenerReason     string       `json:"listenerReason"`
	Direction          string       `json:"direction"`
	Routing            *route.Trace `json:"routing,omitempty"`
	Route              string       `json:"route,omitempty"`
	Timeout            string       `json:"timeout"`
	Retry              string       `json:"retry"`
	Fault              string       `json:"fault"`
	Authorization      string       `json:"authorization"`
	Clusters           []ClusterExp `json:"clusters,omitempty"`
	DestinationService string       `json:"destinationService,omitempty"`
	// Outcome is what the proxy does with such a request.
	Outcome Outcome `json:"outcome"`
}

// ClusterExp is one destination cluster of the chosen route.
type ClusterExp struct {
	Name           string                    `json:"name"`
	Weight         uint32                    `json:"weight"`
	Percent        float64                   `json:"percent"`
	Subset         string                    `json:"subset,omitempty"`
	Found          bool                      `json:"found"`
	LoadBalancer   string                    `json:"loadBalancer,omitempty"`
	ConnectTimeout string                    `json:"connectTimeout,omitempty"`
	Protocol       string                    `json:"protocol,omitempty"`
	TLS            string                    `json:"tls,omitempty"`
	Endpoints      []upstream.EndpointStatus `json:"endpoints"`
	Healthy        int                       `json:"healthy"`
	// Outcome is what a request sent to this cluster gets before reaching upstream.
	Outcome Outcome `json:"outcome"`
}

// Outcome is a predicted result.
type Outcome struct {
	// Forwarded: the request is sent upstream (its code is then the upstream's).
	Forwarded     bool   `json:"forwarded"`
	ResponseCode  int    `json:"responseCode,omitempty"`
	ResponseFlags string `json:"responseFlags"`
	Reason        string `json:"reason"`
}

// ErrNoHTTPListener is an explain request naming no HTTP listener this proxy has.
var ErrNoHTTPListener = fmt.Errorf("no such HTTP listener")

// Explain traces how the request would be handled on the named HTTP listener; with no
// name, the listener an app's HTTP_PROXY calls arrive on (outbound_http_proxy), else
// the first outbound HTTP listener whose routes know the request's host.
func (f *Forwarder) Explain(listenerName string, r *http.Request) (*Explanation, error) {
	cfg := f.cfg.Load()
	if cfg == nil {
		return nil, fmt.Errorf("the proxy has no configuration yet")
	}
	l, ch, why, err := pickListener(cfg, listenerName, r)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{
		Listener: l.Name, ListenerAddress: l.Address, ListenerReason: why, Direction: l.Direction.String(),
		Retry: "none configured (a failed connect is retried once on another endpoint)",
		Fault: "none configured",
		// Authorization: no policy engine has landed in the proxy yet.
		Authorization: "no authorization policy engine: every request is allowed",
	}
	tr := &route.Trace{}
	vh, rt := ch.Routes.Select(r, tr)
	ex.Routing = tr
	if vh == nil || rt == nil {
		ex.Timeout = "-"
		ex.Outcome = Outcome{ResponseCode: http.StatusNotFound, ResponseFlags: streaminfo.NoRouteFound.String(), Reason: "no route matched"}
		if vh == nil {
			ex.Outcome.Reason = "no virtual host matched the authority " + fmt.Sprintf("%q", r.Host)
		}
		return ex, nil
	}
	ex.Route = rt.Name
	ex.Timeout = "none"
	if rt.Timeout > 0 {
		ex.Timeout = rt.Timeout.String() + " (then 504 UT)"
	}
	var total uint64
	for _, wc := range rt.Clusters {
		total += uint64(wc.Weight)
	}
	svc := telemetry.Services{}
	forwarded, failing := 0.0, []string{}
	for _, wc := range rt.Clusters {
		ce := ClusterExp{Name: wc.Name, Weight: wc.Weight}
		if total > 0 {
			ce.Percent = float64(wc.Weight) * 100 / float64(total)
		}
		if parts := strings.Split(wc.Name, "|"); len(parts) == 4 {
			ce.Subset = parts[2]
			if s := svc.ForCluster(wc.Name); s != nil && ex.DestinationService == "" {
				ex.DestinationService = s.Host
			}
		}
		c := cfg.Clusters[wc.Name]
		switch {
		case c == nil:
			ce.Outcome = Outcome{ResponseCode: http.StatusServiceUnavailable, ResponseFlags: streaminfo.NoClusterFound.String(), Reason: "the route names a cluster this proxy does not have"}
		default:
			ce.Found = true
			ce.LoadBalancer = lbName(c.LB)
			ce.ConnectTimeout = c.ConnectTimeout.String()
			ce.Protocol = protocolName(c, r)
			ce.Endpoints = append([]upstream.EndpointStatus{}, c.AllEndpoints()...)
			ce.TLS = tlsMode(ce.Endpoints)
			sort.Slice(ce.Endpoints, func(i, j int) bool { return ce.Endpoints[i].Address < ce.Endpoints[j].Address })
			ce.Healthy = len(c.Endpoints())
			if ce.Healthy == 0 {
				ce.Outcome = Outcome{ResponseCode: http.StatusServiceUnavailable, ResponseFlags: streaminfo.NoHealthyUpstream.String(), Reason: "the cluster has no healthy endpoint"}
			} else {
				ce.Outcome = Outcome{Forwarded: true, ResponseFlags: "-", Reason: fmt.Sprintf("forwarded to one of %d healthy endpoints by %s", ce.Healthy, ce.LoadBalancer)}
			}
		}
		if ce.Outcome.Forwarded {
			forwarded += ce.Percent
		} else {
			failing = append(failing, fmt.Sprintf("%s (%.0f%%): %d %s", wc.Name, ce.Percent, ce.Outcome.ResponseCode, ce.Outcome.ResponseFlags))
		}
		ex.Clusters = append(ex.Clusters, ce)
	}
	switch {
	case len(failing) == 0:
		ex.Outcome = Outcome{Forwarded: true, ResponseFlags: "-", Reason: "forwarded upstream; the answer is the upstream's"}
	case forwarded == 0 && len(ex.Clusters) == 1:
		ex.Outcome = ex.Clusters[0].Outcome
	case forwarded == 0:
		ex.Outcome = Outcome{ResponseCode: http.StatusServiceUnavailable, ResponseFlags: ex.Clusters[0].Outcome.ResponseFlags, Reason: "every destination fails: " + strings.Join(failing, "; ")}
	default:
		ex.Outcome = Outcome{Forwarded: true, ResponseFlags: "-", Reason: fmt.Sprintf("%.0f%% forwarded upstream; the rest fails: %s", forwarded, strings.Join(failing, "; "))}
	}
	return ex, nil
}

// pickListener finds the HTTP filter chain to explain: of the named listener (the one
// whose routes know the host, else its first HTTP chain), else outbound_http_proxy,
// else the first outbound HTTP chain with a virtual host for the request's host
// (preferring one that names the host over a catch-all such as allow_any).
func pickListener(cfg *Config, name string, r *http.Request) (*Listener, *Chain, string, error) {
	httpChains := func(l *Listener) []*Chain {
		var out []*Chain
		for _, c := range l.Chains() {
			if c.Routes != nil {
				out = append(out, c)
			}
		}
		return out
	}
	if name != "" {
		l := cfg.Listeners[name]
		if l == nil || len(httpChains(l)) == 0 {
			return nil, nil, "", fmt.Errorf("%w %q", ErrNoHTTPListener, name)
		}
		chains := httpChains(l)
		for _, c := range chains {
			if c.Routes.VirtualHost(r.Host) != nil {
				return l, c, "named in the request", nil
			}
		}
		return l, chains[0], "named in the request", nil
	}
	if l := cfg.Listeners["outbound_http_proxy"]; l != nil && len(httpChains(l)) > 0 {
		return l, httpChains(l)[0], "the app's HTTP_PROXY listener (outbound_http_proxy)", nil
	}
	names := make([]string, 0, len(cfg.Listeners))
	for n := range cfg.Listeners {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, catchAll := range []bool{false, true} {
		for _, n := range names {
			l := cfg.Listeners[n]
			if l.Direction != streaminfo.Outbound {
				continue
			}
			for _, c := range httpChains(l) {
				vh := c.Routes.VirtualHost(r.Host)
				if vh == nil || !catchAll && (vh.Name == "allow_any" || vh.Name == "block_all") {
					continue
				}
				return l, c, "the first outbound HTTP listener with a virtual host for " + fmt.Sprintf("%q", r.Host), nil
			}
		}
	}
	return nil, nil, "", fmt.Errorf("no outbound HTTP listener routes host %q", r.Host)
}

func lbName(p resource.LBPolicy) string {
	switch p {
	case resource.LBLeastRequest:
		return "LEAST_REQUEST"
	case resource.LBRandom:
		return "RANDOM"
	case resource.LBRingHash:
		return "RING_HASH"
	case resource.LBMaglev:
		return "MAGLEV"
	case resource.LBClusterProvided:
		return "CLUSTER_PROVIDED"
	}
	return "ROUND_ROBIN"
}

func protocolName(c *upstream.Cluster, r *http.Request) string {
	switch {
	case c.HTTP2:
		return "HTTP/2 (h2c)"
	case c.UseDownstreamProtocol:
		return "the caller's HTTP version"
	}
	return "HTTP/1.1"
}

// tlsMode summarizes the transport sockets the cluster chose for its endpoints.
func tlsMode(eps []upstream.EndpointStatus) string {
	n := 0
	for _, e := range eps {
		if e.TLS {
			n++
		}
	}
	switch {
	case len(eps) == 0:
		return "-"
	case n == len(eps):
		return "mutual TLS to every endpoint"
	case n == 0:
		return "plaintext"
	}
	return fmt.Sprintf("mutual TLS to %d of %d endpoints (transport_socket_matches), plaintext to the others", n, len(eps))
}
