package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/forward"
	"skein.dev/skein/internal/proxy/upstream"
)

// Explain asks a sidecar's admin server (POST /explain) how it handles a request.
func Explain(ctx context.Context, client *http.Client, adminAddr string, req admin.ExplainRequest) (*forward.Explanation, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+adminAddr+"/explain", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sidecar %s: %s", adminAddr, strings.TrimSpace(string(data)))
	}
	var ex forward.Explanation
	if err := json.Unmarshal(data, &ex); err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", adminAddr, err)
	}
	return &ex, nil
}

// Path is a request's decision trace across the two sidecars of a mesh call: the
// caller's (listener, route, cluster, endpoint) and, when the request is forwarded to
// a workload of the mesh, the destination's (inbound chain, authorization, route).
type Path struct {
	Source      *forward.Explanation `json:"source"`
	Destination *Hop                 `json:"destination,omitempty"`
}

// Hop is the destination sidecar's part of a Path.
type Hop struct {
	Proxy       string               `json:"proxy"`
	Workload    string               `json:"workload"`
	Endpoint    string               `json:"endpoint"`
	Explanation *forward.Explanation `json:"explanation,omitempty"`
	// Error is why the destination could not explain (it is still reported).
	Error string `json:"error,omitempty"`
}

// ExplainPath explains req on the source sidecar, then on the sidecar of the endpoint
// the source would pick first (the first healthy endpoint of the first forwarding
// cluster), as a connection from the source: over mTLS with the source's SPIFFE ID
// when the source originates mTLS to that endpoint. Both answers come from each
// proxy's own compiled tables (POST /explain).
func ExplainPath(ctx context.Context, client *http.Client, source Target, targets []Target, req admin.ExplainRequest) (*Path, error) {
	ex, err := Explain(ctx, client, source.Admin, req)
	if err != nil {
		return nil, err
	}
	p := &Path{Source: ex}
	ep, ok := firstEndpoint(ex)
	if !ok {
		return p, nil
	}
	dst, ok := targetOf(targets, ep.Address)
	if !ok {
		return p, nil
	}
	hop := &Hop{Proxy: dst.Proxy, Workload: dst.Workload + "." + dst.Namespace, Endpoint: ep.Address}
	dreq := admin.ExplainRequest{Method: req.Method, URL: req.URL, Headers: req.Headers, Destination: ep.Address, TLS: ep.TLS, SourceAddress: source.IP}
	if dreq.SourceAddress == "" {
		dreq.SourceAddress = "127.0.0.1"
	}
	if ep.TLS {
		dreq.SourcePrincipal = source.Principal
	}
	if hop.Explanation, err = Explain(ctx, client, dst.Admin, dreq); err != nil {
		hop.Error = err.Error()
	}
	p.Destination = hop
	return p, nil
}

func firstEndpoint(ex *forward.Explanation) (upstream.EndpointStatus, bool) {
	for _, c := range ex.Clusters {
		if !c.Outcome.Forwarded {
			continue
		}
		for _, e := range c.Endpoints {
			if e.Healthy {
				return e, true
			}
		}
	}
	return upstream.EndpointStatus{}, false
}

// targetOf finds the sidecar that receives connections to an endpoint address: its
// inbound address (isolation none) or its pod IP (netns).
func targetOf(targets []Target, addr string) (Target, bool) {
	host, _, _ := net.SplitHostPort(addr)
	for _, t := range targets {
		if slices.Contains(t.Inbound, addr) {
			return t, true
		}
	}
	for _, t := range targets {
		if t.IP != "" && t.IP == host {
			return t, true
		}
	}
	return Target{}, false
}

// RenderPath prints a Path: the source's trace, the destination's, and the outcome
// of the whole call.
func RenderPath(w io.Writer, source string, req admin.ExplainRequest, p *Path) {
	RenderExplanation(w, source, req, p.Source)
	d := p.Destination
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\nat the destination: %s (%s), endpoint %s\n", d.Proxy, d.Workload, d.Endpoint)
	if d.Error != "" {
		fmt.Fprintf(w, "  not explained: %s\n", d.Error)
		return
	}
	renderBody(w, "  ", d.Explanation)
	o := d.Explanation.Outcome
	if o.Forwarded {
		fmt.Fprintf(w, "call outcome:  forwarded to %s's app; the answer is the app's\n", d.Workload)
	} else {
		fmt.Fprintf(w, "call outcome:  %s (answered by %s)\n", outcomeText(o), d.Proxy)
	}
}

// RenderExplanation prints the decision trace for people.
func RenderExplanation(w io.Writer, source string, req admin.ExplainRequest, ex *forward.Explanation) {
	fmt.Fprintf(w, "request:       %s %s\n", strings.ToUpper(orDefault(req.Method, "GET")), req.URL)
	keys := make([]string, 0, len(req.Headers))
	for k := range req.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  header       %s: %s\n", k, strings.Join(req.Headers[k], ", "))
	}
	fmt.Fprintf(w, "source:        %s\n", source)
	renderBody(w, "", ex)
}

// renderBody prints one proxy's trace, each line prefixed with indent.
func renderBody(w io.Writer, indent string, ex *forward.Explanation) {
	w = &indentWriter{w: w, indent: indent}
	fmt.Fprintf(w, "listener:      %s (%s) — %s\n", ex.Listener, ex.Direction, ex.ListenerReason)
	if _, err := strconv.Atoi(ex.Chain); err != nil && ex.Chain != "" { // unnamed chains are numbered
		fmt.Fprintf(w, "filter chain:  %s\n", ex.Chain)
	}
	if ex.Source != "" {
		fmt.Fprintf(w, "connection:    from %s\n", ex.Source)
	}
	fmt.Fprintf(w, "authorization: %s\n", ex.Authorization)
	if len(ex.AuthorizationFilters) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, a := range ex.AuthorizationFilters {
			detail := a.Policy
			if a.Reply != "" {
				detail = a.Reply
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Filter, orDefault(a.Action, "-"), a.Result, orDefault(detail, "-"))
		}
		tw.Flush()
	}
	if r := ex.Routing; r != nil {
		fmt.Fprintf(w, "route config:  %s\n", r.RouteConfig)
		if r.VirtualHost != "" {
			fmt.Fprintf(w, "virtual host:  %s — %s\n", r.VirtualHost, r.VirtualHostReason)
		} else {
			fmt.Fprintf(w, "virtual host:  none — %s\n", r.VirtualHostReason)
		}
		if len(r.Routes) > 0 {
			fmt.Fprintln(w, "routes (in order):")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, rc := range r.Routes {
				verdict := "no match: " + rc.Reason
				mark := "-"
				if rc.Matched {
					verdict, mark = "MATCHED", "*"
				}
				fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", mark, rc.Name, rc.Match, verdict)
			}
			tw.Flush()
		}
	}
	if ex.Routing != nil || ex.Outcome.Forwarded {
		if ex.Route == "" {
			fmt.Fprintf(w, "route:         none\n")
		} else {
			fmt.Fprintf(w, "route:         %s\n", ex.Route)
		}
		fmt.Fprintf(w, "timeout:       %s\n", ex.Timeout)
		fmt.Fprintf(w, "retry:         %s\n", ex.Retry)
		fmt.Fprintf(w, "fault:         %s\n", ex.Fault)
	} else {
		fmt.Fprintf(w, "route:         not reached (authorization runs before routing)\n")
	}
	if ex.DestinationService != "" {
		fmt.Fprintf(w, "destination:   %s\n", ex.DestinationService)
	}
	for _, c := range ex.Clusters {
		subset := c.Subset
		if subset == "" {
			subset = "-"
		}
		fmt.Fprintf(w, "cluster:       %s  weight %d (%.0f%%)  subset %s\n", c.Name, c.Weight, c.Percent, subset)
		if !c.Found {
			fmt.Fprintf(w, "  not found on this proxy\n")
		} else {
			fmt.Fprintf(w, "  lb %s, connect timeout %s, %s, tls: %s\n", c.LoadBalancer, c.ConnectTimeout, c.Protocol, c.TLS)
			if len(c.Endpoints) == 0 {
				fmt.Fprintf(w, "  endpoints: none\n")
			}
			for _, e := range c.Endpoints {
				health := "healthy"
				if !e.Healthy {
					health = "UNHEALTHY (not eligible)"
				}
				tls := "plaintext"
				if e.TLS {
					tls = "mTLS"
				}
				fmt.Fprintf(w, "  endpoint %s weight %d %s %s\n", e.Address, e.Weight, tls, health)
			}
		}
		fmt.Fprintf(w, "  => %s\n", outcomeText(c.Outcome))
	}
	fmt.Fprintf(w, "outcome:       %s\n", outcomeText(ex.Outcome))
}

// indentWriter prefixes every line.
type indentWriter struct {
	w      io.Writer
	indent string
	mid    bool
}

func (iw *indentWriter) Write(p []byte) (int, error) {
	if iw.indent == "" {
		return iw.w.Write(p)
	}
	var b []byte
	for _, c := range p {
		if !iw.mid {
			b = append(b, iw.indent...)
			iw.mid = true
		}
		b = append(b, c)
		if c == '\n' {
			iw.mid = false
		}
	}
	if _, err := iw.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func outcomeText(o forward.Outcome) string {
	if o.Forwarded {
		return o.Reason
	}
	if o.ResponseCode == 0 {
		return fmt.Sprintf("connection closed: %s", o.Reason)
	}
	return fmt.Sprintf("%d %s: %s", o.ResponseCode, o.ResponseFlags, o.Reason)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
