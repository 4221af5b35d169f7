package forward

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/filter/rbac"
	"skein.dev/skein/internal/proxy/filterchain"

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
	Listener        string `json:"listener"`
	ListenerAddress string `json:"listenerAddress,omitempty"`
	ListenerReason  string `json:"listenerReason"`
	Direction       string `json:"direction"`
	// Chain is the filter chain the connection lands on (its name when it has one).
	Chain string `json:"chain,omitempty"`
	// Source is who the request is evaluated as: address and, over mTLS, principal.
	Source        string       `json:"source,omitempty"`
	Routing       *route.Trace `json:"routing,omitempty"`
	Route         string       `json:"route,omitempty"`
	Timeout       string       `json:"timeout"`
	Retry         string       `json:"retry"`
	Fault         string       `json:"fault"`
	Authorization string       `json:"authorization"`
	// AuthorizationFilters are the decisions of the chain's authorization filters
	// (RBAC from AuthorizationPolicy, jwt_authn from RequestAuthentication), in the
	// order the request path runs them; evaluation stops at the first refusal.
	AuthorizationFilters []AuthzStep  `json:"authorizationFilters,omitempty"`
	Clusters             []ClusterExp `json:"clusters,omitempty"`
	DestinationService   string       `json:"destinationService,omitempty"`
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

// AuthzStep is one authorization filter's decision.
type AuthzStep struct {
	Filter string `json:"filter"`
	// Action is the RBAC action: ALLOW, DENY or LOG (Istio's AUDIT); empty for jwt_authn.
	Action string `json:"action,omitempty"`
	// Result: allowed, denied, logged, not_logged.
	Result string `json:"result"`
	// Policy is the matching RBAC policy, named as Istio names them:
	// ns[NAMESPACE]-policy[NAME]-rule[INDEX].
	Policy   string   `json:"policy,omitempty"`
	Policies []string `json:"policies,omitempty"`
	// Reply is the local reply of a refusal (status and body).
	Reply string `json:"reply,omitempty"`
}

// ExplainInput is a request to explain and the connection it arrives on.
type ExplainInput struct {
	// Listener names the listener; empty picks it from Destination, else the app's
	// outbound HTTP listener.
	Listener string
	// Destination is the address the caller connects to (e.g. an endpoint of the
	// caller's cluster): the listener bound to it, else an inbound listener that
	// restores original destinations, and the filter chain an accepted connection
	// to it would get.
	Destination string
	// TLS: the connection is mutual TLS from a sidecar whose SPIFFE ID is
	// SourcePrincipal.
	TLS             bool
	SourcePrincipal string
	// SourceAddress is the caller's ip[:port] (default 127.0.0.1).
	SourceAddress string
	Request       *http.Request
}

// ErrNoHTTPListener is an explain request naming no HTTP listener this proxy has.
var ErrNoHTTPListener = fmt.Errorf("no such HTTP listener")

// Explain traces how the request would be handled on the named HTTP listener; with no
// name, the listener an app's HTTP_PROXY calls arrive on (outbound_http_proxy), else
// the first outbound HTTP listener whose routes know the request's host.
func (f *Forwarder) Explain(listenerName string, r *http.Request) (*Explanation, error) {
	return f.ExplainConn(ExplainInput{Listener: listenerName, Request: r})
}

// ExplainConn traces a request arriving on a described connection: listener and
// chain selection, the chain's authorization filters (the compiled RBAC and JWT
// filters the request path runs, evaluated without side effects), then routing.
func (f *Forwarder) ExplainConn(in ExplainInput) (*Explanation, error) {
	cfg := f.cfg.Load()
	if cfg == nil {
		return nil, fmt.Errorf("the proxy has no configuration yet")
	}
	r := in.Request
	var (
		l   *Listener
		ch  *Chain
		why string
		err error
	)
	conn, err := explainConn(in)
	if err != nil {
		return nil, err
	}
	if in.Listener == "" && in.Destination != "" {
		l, ch, why, err = pickByDestination(cfg, in)
	} else {
		l, ch, why, err = pickListener(cfg, in.Listener, r)
	}
	if err != nil {
		return nil, err
	}
	ex := &Explanation{
		Listener: l.Name, ListenerAddress: l.Address, ListenerReason: why, Direction: l.Direction.String(), Chain: ch.Name,
		Retry: "none configured (a failed connect is retried once on another endpoint)",
		Fault: "none configured",
	}
	if in.Destination != "" || in.SourcePrincipal != "" || in.SourceAddress != "" {
		ex.Source = conn.Source.Addr().String()
		if conn.Authenticated {
			ex.Source += " over mTLS as " + conn.Principal
		} else {
			ex.Source += " (plaintext: no peer identity)"
		}
	}
	if denied := explainAuthz(ex, l, ch, conn, r); denied != nil {
		ex.Timeout = "-"
		ex.Outcome = *denied
		return ex, nil
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
			if c.Policy.PeakEWMA != nil {
				ce.LoadBalancer += " (skein peak EWMA)"
			}
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
				why := "the first outbound HTTP listener with a virtual host for " + fmt.Sprintf("%q", r.Host)
				// Chains of one port may share a route table: when the proxy's DNS
				// table knows the service's address, take the chain a connection to it
				// lands on (capture mode), as the request path's chain match would.
				if vc, addr := chainForService(cfg, l, vh.Name); vc != nil {
					return l, vc, why + ", chain of a connection to " + addr, nil
				}
				return l, c, why, nil
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

// explainConn is the filter view of the connection an explained request arrives on.
func explainConn(in ExplainInput) (filter.Conn, error) {
	var c filter.Conn
	src := in.SourceAddress
	if src == "" {
		src = "127.0.0.1"
	}
	if ap, err := netip.ParseAddrPort(src); err == nil {
		c.Source = ap
	} else if a, err := netip.ParseAddr(src); err == nil {
		c.Source = netip.AddrPortFrom(a, 0)
	} else {
		return c, fmt.Errorf("source address %q: want ip or ip:port", src)
	}
	if in.Destination != "" {
		ap, err := netip.ParseAddrPort(in.Destination)
		if err != nil {
			return c, fmt.Errorf("destination %q: want ip:port", in.Destination)
		}
		c.Destination = ap
	}
	if in.SourcePrincipal != "" {
		if !in.TLS {
			return c, fmt.Errorf("a source principal needs a mutual TLS connection (tls)")
		}
		c.Authenticated, c.Principal = true, in.SourcePrincipal
	}
	return c, nil
}

// pickByDestination finds the listener a connection to in.Destination is accepted
// by (bound to that address, else an inbound listener with original_dst, as in
// capture mode), and the HTTP filter chain it would match.
func pickByDestination(cfg *Config, in ExplainInput) (*Listener, *Chain, string, error) {
	dst, _ := netip.ParseAddrPort(in.Destination)
	ci := filterchain.ConnInfo{Dst: dst, TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1"}}
	if in.TLS {
		ci.TransportProtocol = "tls"
	}
	names := make([]string, 0, len(cfg.Listeners))
	for n := range cfg.Listeners {
		names = append(names, n)
	}
	sort.Strings(names)
	var cands []*Listener
	for _, n := range names {
		if l := cfg.Listeners[n]; !l.UDP && l.Address == in.Destination {
			cands = append(cands, l)
		}
	}
	why := "bound to " + in.Destination
	if len(cands) == 0 {
		for _, n := range names {
			if l := cfg.Listeners[n]; !l.UDP && l.Direction == streaminfo.Inbound && l.Filters.OriginalDst {
				cands = append(cands, l)
			}
		}
		why = "captured inbound listener (original destination " + in.Destination + ")"
	}
	for _, l := range cands {
		ch := l.Select(ci)
		if ch == nil {
			continue
		}
		if ch.Routes == nil {
			return nil, nil, "", fmt.Errorf("%w: listener %s sends %s connections to %s to a TCP chain", ErrNoHTTPListener, l.Name, ci.TransportProtocol, in.Destination)
		}
		return l, ch, why + ", filter chain by " + ci.TransportProtocol, nil
	}
	return nil, nil, "", fmt.Errorf("%w accepts connections to %s", ErrNoHTTPListener, in.Destination)
}

// explainAuthz evaluates the chain's authorization filters in the request path's
// order (network filters, then HTTP filters) and returns the refusal, if any.
func explainAuthz(ex *Explanation, l *Listener, ch *Chain, conn filter.Conn, r *http.Request) *Outcome {
	if len(ch.NetworkFilters) == 0 && len(ch.HTTPFilters) == 0 {
		if l.Direction == streaminfo.Outbound {
			ex.Authorization = "no filter on this outbound listener; AuthorizationPolicy is enforced by the destination's sidecar"
		} else {
			ex.Authorization = "no AuthorizationPolicy or RequestAuthentication applies here: allowed"
		}
		return nil
	}
	var allowedBy []string
	for _, nf := range ch.NetworkFilters {
		rf, ok := nf.(*rbac.NetworkFilter)
		if !ok {
			continue
		}
		d := rf.Explain(&conn)
		ex.AuthorizationFilters = append(ex.AuthorizationFilters, authzStep(d))
		if d.Denied() {
			ex.Authorization = "DENIED (connection closed): " + denyReason(d)
			return &Outcome{ResponseFlags: "-", Reason: "the connection is closed by " + d.Filter + ": " + denyReason(d)}
		}
		allowedBy = append(allowedBy, allowReason(d)...)
	}
	req := &filter.Request{HTTP: r.Clone(context.Background()), Conn: conn, Listener: l.Name, Metadata: filter.Metadata{}}
	for _, hf := range ch.HTTPFilters {
		switch f := hf.(type) {
		case *rbac.HTTPFilter:
			d := f.Explain(req)
			ex.AuthorizationFilters = append(ex.AuthorizationFilters, authzStep(d))
			if d.Denied() {
				ex.Authorization = "DENIED: " + denyReason(d)
				return &Outcome{ResponseCode: http.StatusForbidden, ResponseFlags: "-", Reason: fmt.Sprintf("%q from %s (%s)", rbac.DeniedBody, d.Filter, "rbac_access_denied_matched_policy["+orNone(d.Policy)+"]")}
			}
			if d.Result == "logged" {
				// The request path records the AUDIT match the same way.
				req.Metadata.Set(rbac.HTTPFilterName, rbac.AccessLogHint, true)
			}
			allowedBy = append(allowedBy, allowReason(d)...)
		default:
			// Any other filter (jwt_authn) runs as on the request path, on a copy of the
			// request: its checks and the metadata it publishes for RBAC.
			step := AuthzStep{Filter: filterName(hf), Result: "allowed"}
			if reply := hf.DecodeHTTP(req); reply != nil {
				step.Result, step.Reply = "denied", fmt.Sprintf("%d %s", reply.Status, reply.Body)
				ex.AuthorizationFilters = append(ex.AuthorizationFilters, step)
				ex.Authorization = "DENIED by " + step.Filter + ": " + step.Reply
				return &Outcome{ResponseCode: reply.Status, ResponseFlags: "-", Reason: fmt.Sprintf("%q from %s", reply.Body, step.Filter)}
			}
			ex.AuthorizationFilters = append(ex.AuthorizationFilters, step)
		}
	}
	ex.Authorization = "allowed"
	if len(allowedBy) > 0 {
		ex.Authorization += ": " + strings.Join(allowedBy, "; ")
	}
	return nil
}

func authzStep(d rbac.Decision) AuthzStep {
	return AuthzStep{Filter: d.Filter, Action: d.Action, Result: d.Result, Policy: d.Policy, Policies: d.Policies}
}

func denyReason(d rbac.Decision) string {
	if d.Action == "DENY" {
		return "DENY policy " + d.Policy + " matched"
	}
	return fmt.Sprintf("no ALLOW policy matched (%s: %s)", rules(len(d.Policies)), strings.Join(d.Policies, ", "))
}

func allowReason(d rbac.Decision) []string {
	switch d.Result {
	case "logged":
		return []string{"AUDIT policy " + d.Policy + " matched (recorded in the access log)"}
	case "allowed":
		if d.Action == "ALLOW" {
			return []string{"ALLOW policy " + d.Policy + " matched"}
		}
		if d.Action == "DENY" {
			return []string{fmt.Sprintf("no DENY policy matched (%s)", rules(len(d.Policies)))}
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func filterName(f filter.HTTP) string {
	if n, ok := f.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", f)
}

func rules(n int) string {
	if n == 1 {
		return "1 rule"
	}
	return fmt.Sprintf("%d rules", n)
}

// chainForService resolves a virtual host's service (named host:port) with the proxy's
// own DNS table and matches a connection to that address against the listener's
// filter chains; nil when the name is not in a table or the chain is not HTTP.
func chainForService(cfg *Config, l *Listener, vhost string) (*Chain, string) {
	host, portStr, ok := strings.Cut(vhost, ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil {
		return nil, ""
	}
	for _, dl := range cfg.Listeners {
		if dl.DNS == nil {
			continue
		}
		addrs := dl.DNS.Lookup(host)
		if len(addrs) == 0 {
			continue
		}
		dst := netip.AddrPortFrom(addrs[0], uint16(port))
		c := l.Select(filterchain.ConnInfo{Dst: dst, TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1"}})
		if c == nil || c.Routes == nil {
			return nil, ""
		}
		return c, dst.String()
	}
	return nil, ""
}
