// Package route compiles route configurations into immutable lookup tables: virtual host
// by domain (Envoy's order: exact, longest suffix wildcard, longest prefix wildcard, "*"),
// then the first route whose path and header matchers hold, then a weighted cluster.
package route

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// Table is a compiled RouteConfiguration. It is immutable and safe for concurrent use.
type Table struct {
	Name   string
	exact  map[string]*VirtualHost
	suffix []wildcard // "*.foo.com": longest suffix first
	prefix []wildcard // "foo.*": longest prefix first
	any    *VirtualHost
}

type wildcard struct {
	part string
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name   string
	Routes []*Route
}

// Route is a compiled route: its match, and what the forwarder does with a request it
// matches (resource.Route's actions, see docs/XDS.md).
type Route struct {
	Name     string
	match    resource.RouteMatch
	Clusters []resource.WeightedCluster
	cumul    []uint64
	total    uint64
	Timeout  time.Duration
	// HashPolicies key consistent-hash balancing (upstream.RequestHash).
	HashPolicies []resource.HashPolicy

	Redirect                        *resource.Redirect
	Rewrite                         resource.Rewrite
	RequestHeaders, ResponseHeaders resource.HeaderMutation
	Retry                           *resource.RetryPolicy
	Mirrors                         []resource.Mirror
	Fault                           *resource.Fault
	CORS                            *resource.CORS
	// Budget is the retry budget's state (nil without one); it lives as long as the
	// compiled route.
	Budget *Budget
	// Direct answers the request itself (direct_response); nil means forward.
	Direct *resource.DirectResponse
	// ClusterNotFoundStatus is the answer when the picked cluster does not exist; 0
	// means 503.
	ClusterNotFoundStatus int
}

// MatchKind says how the route matched the path, which decides what a prefix rewrite
// replaces.
func (rt *Route) MatchKind() resource.PathKind { return rt.match.Kind }

// MatchedPrefix is the route's path prefix (prefix matches only).
func (rt *Route) MatchedPrefix() string { return rt.match.Path }

// New compiles a route configuration.
func New(rc *resource.RouteConfig) *Table { return Compile(rc, nil) }

// Compile compiles a route configuration; routes of prev (may be nil) with the same
// virtual host, name and retry budget settings lend their budget state, so a config
// swap does not reset retry budgets.
func Compile(rc *resource.RouteConfig, prev *Table) *Table {
	t := &Table{Name: rc.Name, exact: map[string]*VirtualHost{}}
	for _, v := range rc.VirtualHosts {
		vh := &VirtualHost{Name: v.Name}
		for _, r := range v.Routes {
			cr := compileRoute(r)
			if cr.Budget != nil && prev != nil {
				if old := prev.budgetOf(v.Name, r.Name); old != nil && old.cfg == cr.Budget.cfg {
					cr.Budget = old
				}
			}
			vh.Routes = append(vh.Routes, cr)
		}
		for _, d := range v.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				t.any = vh
			case strings.HasPrefix(d, "*"):
				t.suffix = append(t.suffix, wildcard{part: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefix = append(t.prefix, wildcard{part: d[:len(d)-1], vh: vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	sort.SliceStable(t.suffix, func(i, j int) bool { return len(t.suffix[i].part) > len(t.suffix[j].part) })
	sort.SliceStable(t.prefix, func(i, j int) bool { return len(t.prefix[i].part) > len(t.prefix[j].part) })
	return t
}

func compileRoute(r resource.Route) *Route {
	cr := &Route{Name: r.Name, match: r.Match, Clusters: r.Clusters, Timeout: r.Timeout,
		Redirect: r.Redirect, Rewrite: r.Rewrite, RequestHeaders: r.RequestHeaders, ResponseHeaders: r.ResponseHeaders,
		Retry: r.Retry, Mirrors: r.Mirrors, Fault: r.Fault, CORS: r.CORS,
		Direct: r.Direct, ClusterNotFoundStatus: r.ClusterNotFoundStatus, HashPolicies: r.HashPolicies}
	if r.Retry != nil && r.Retry.Budget != nil {
		cr.Budget = NewBudget(*r.Retry.Budget, time.Now)
	}
	for _, c := range r.Clusters {
		cr.total += uint64(c.Weight)
		cr.cumul = append(cr.cumul, cr.total)
	}
	return cr
}

// budgetOf finds the retry budget of a named route of a named virtual host.
func (t *Table) budgetOf(vhost, route string) *Budget {
	var found *Budget
	t.eachVirtualHost(func(vh *VirtualHost) {
		if vh.Name != vhost {
			return
		}
		for _, r := range vh.Routes {
			if r.Name == route && r.Budget != nil && found == nil {
				found = r.Budget
			}
		}
	})
	return found
}

func (t *Table) eachVirtualHost(fn func(*VirtualHost)) {
	for _, vh := range t.exact {
		fn(vh)
	}
	for _, w := range t.suffix {
		fn(w.vh)
	}
	for _, w := range t.prefix {
		fn(w.vh)
	}
	if t.any != nil {
		fn(t.any)
	}
}

// VirtualHost finds the virtual host for a Host/:authority value. As Envoy does, the
// host is tried as given and then without its port.
func (t *Table) VirtualHost(host string) *VirtualHost {
	vh, _ := t.virtualHost(host, nil)
	return vh
}

// virtualHost is VirtualHost; when tr is not nil it records how the host was chosen.
func (t *Table) virtualHost(host string, tr *Trace) (*VirtualHost, string) {
	host = strings.ToLower(host)
	if vh, how := t.lookup(host, tr != nil); vh != nil {
		return vh, how
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if vh, how := t.lookup(h, tr != nil); vh != nil {
			if tr != nil {
				how += " (after removing the port)"
			}
			return vh, how
		}
	}
	if t.any != nil && tr != nil {
		return t.any, `catch-all domain "*"`
	}
	return t.any, ""
}

func (t *Table) lookup(host string, explain bool) (*VirtualHost, string) {
	if vh, ok := t.exact[host]; ok {
		if explain {
			return vh, "exact domain " + strconv.Quote(host)
		}
		return vh, ""
	}
	// The wildcard must match at least one character, as in Envoy.
	for _, w := range t.suffix {
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			if explain {
				return w.vh, "suffix wildcard domain " + strconv.Quote("*"+w.part)
			}
			return w.vh, ""
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			if explain {
				return w.vh, "prefix wildcard domain " + strconv.Quote(w.part+"*")
			}
			return w.vh, ""
		}
	}
	return nil, ""
}

// Match returns the route for a request, or nil when none matches (404).
func (t *Table) Match(r *http.Request) *Route {
	_, rt := t.Select(r, nil)
	return rt
}

// Select returns the virtual host and route for a request (either may be nil). When
// tr is not nil it records the decision: how the virtual host was chosen and, for each
// route tried in order, why it did not match. The request path passes nil and pays
// nothing for the recording; `skein explain` passes a Trace, so both run this code.
func (t *Table) Select(r *http.Request, tr *Trace) (*VirtualHost, *Route) {
	vh, how := t.virtualHost(r.Host, tr)
	if tr != nil {
		tr.RouteConfig = t.Name
		if vh == nil {
			tr.VirtualHostReason = "no virtual host has a domain matching " + strconv.Quote(r.Host)
		} else {
			tr.VirtualHost, tr.VirtualHostReason = vh.Name, how
		}
	}
	if vh == nil {
		return nil, nil
	}
	path := r.URL.EscapedPath()
	if r.URL.Opaque != "" {
		path = r.URL.Opaque
	}
	for _, rt := range vh.Routes {
		if rt.matches(path, r, tr) {
			if tr != nil {
				tr.Routes = append(tr.Routes, RouteCheck{Name: rt.Name, Match: describeMatch(rt.match), Matched: true})
			}
			return vh, rt
		}
	}
	return vh, nil
}

// Trace is the record of one routing decision.
type Trace struct {
	RouteConfig       string       `json:"routeConfig"`
	VirtualHost       string       `json:"virtualHost,omitempty"`
	VirtualHostReason string       `json:"virtualHostReason"`
	Routes            []RouteCheck `json:"routes"`
}

// RouteCheck is one route tried: its match and, when it did not match, why.
type RouteCheck struct {
	Name    string `json:"name"`
	Match   string `json:"match"`
	Matched bool   `json:"matched"`
	Reason  string `json:"reason,omitempty"`
}

func (tr *Trace) miss(rt *Route, reason string) {
	tr.Routes = append(tr.Routes, RouteCheck{Name: rt.Name, Match: describeMatch(rt.match), Reason: reason})
}

func (rt *Route) matches(path string, r *http.Request, tr *Trace) bool {
	m := &rt.match
	switch m.Kind {
	case resource.PathPrefix:
		ok := false
		if m.CaseSensitive {
			ok = strings.HasPrefix(path, m.Path)
		} else {
			ok = len(path) >= len(m.Path) && strings.EqualFold(path[:len(m.Path)], m.Path)
		}
		if !ok {
			if tr != nil {
				tr.miss(rt, fmt.Sprintf("path %q does not start with %q", path, m.Path))
			}
			return false
		}
	case resource.PathExact:
		ok := false
		if m.CaseSensitive {
			ok = path == m.Path
		} else {
			ok = strings.EqualFold(path, m.Path)
		}
		if !ok {
			if tr != nil {
				tr.miss(rt, fmt.Sprintf("path %q is not %q", path, m.Path))
			}
			return false
		}
	case resource.PathRegex:
		if !m.Regex.MatchString(path) {
			if tr != nil {
				tr.miss(rt, fmt.Sprintf("path %q does not fully match regex %s", path, m.Regex.String()))
			}
			return false
		}
	}
	for i := range m.Headers {
		if !headerMatches(&m.Headers[i], r) {
			if tr != nil {
				v, ok := headerValue(m.Headers[i].Name, r)
				got := "absent"
				if ok {
					got = strconv.Quote(v)
				}
				tr.miss(rt, fmt.Sprintf("header %s is %s; want %s", m.Headers[i].Name, got, describeHeader(&m.Headers[i])))
			}
			return false
		}
	}
	if len(m.Query) > 0 {
		q := r.URL.Query()
		for i := range m.Query {
			qm := &m.Query[i]
			vals, ok := q[qm.Name]
			matched := ok && (qm.Present || len(vals) > 0 && qm.Match.Match(vals[0]))
			if !matched {
				if tr != nil {
					tr.miss(rt, fmt.Sprintf("query parameter %s does not match", qm.Name))
				}
				return false
			}
		}
	}
	return true
}

// headerValue returns a header's value the way Envoy sees it: pseudo-headers from the
// request line, several values joined with ",".
func headerValue(name string, r *http.Request) (string, bool) {
	switch name {
	case ":authority", "Host":
		return r.Host, r.Host != ""
	case ":method":
		return r.Method, true
	case ":path":
		return r.URL.RequestURI(), true
	case ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vals, ok := r.Header[name]
	if !ok {
		return "", false
	}
	if len(vals) == 1 {
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

// HeaderMatches reports whether a request matches an Envoy header matcher (RBAC uses it
// too).
func HeaderMatches(h *resource.HeaderMatcher, r *http.Request) bool { return headerMatches(h, r) }

func headerMatches(h *resource.HeaderMatcher, r *http.Request) bool {
	v, ok := headerValue(h.Name, r)
	if !ok {
		// Envoy: a missing header matches only an inverted presence check.
		return h.Present && h.Invert
	}
	var matched bool
	if h.Present {
		matched = true
	} else {
		if h.IgnoreCase {
			v = strings.ToLower(v)
		}
		switch h.Kind {
		case resource.StringExact:
			matched = v == h.Value
		case resource.StringPrefix:
			matched = strings.HasPrefix(v, h.Value)
		case resource.StringSuffix:
			matched = strings.HasSuffix(v, h.Value)
		case resource.StringContains:
			matched = strings.Contains(v, h.Value)
		case resource.StringRegex:
			matched = h.Regex.MatchString(v)
		}
	}
	return matched != h.Invert
}

// PickCluster chooses a cluster by weight.
func (rt *Route) PickCluster() string {
	return PickWeighted(rt.Clusters, rt.cumul, rt.total)
}

// PickWeightedCluster chooses a cluster by weight and returns its entry (with its
// header edits); nil for a redirect route.
func (rt *Route) PickWeightedCluster() *resource.WeightedCluster {
	switch len(rt.Clusters) {
	case 0:
		return nil
	case 1:
		return &rt.Clusters[0]
	}
	n := rand.Uint64N(rt.total)
	for i, c := range rt.cumul {
		if n < c {
			return &rt.Clusters[i]
		}
	}
	return &rt.Clusters[len(rt.Clusters)-1]
}

// Cumulative precomputes running weight sums for PickWeighted.
func Cumulative(cs []resource.WeightedCluster) (cumul []uint64, total uint64) {
	for _, c := range cs {
		total += uint64(c.Weight)
		cumul = append(cumul, total)
	}
	return cumul, total
}

// PickWeighted chooses one of cs with probability weight/total.
func PickWeighted(cs []resource.WeightedCluster, cumul []uint64, total uint64) string {
	if len(cs) == 0 {
		return "" // a direct_response route
	}
	if len(cs) == 1 || total == 0 {
		return cs[0].Name
	}
	n := rand.Uint64N(total)
	for i, c := range cumul {
		if n < c {
			return cs[i].Name
		}
	}
	return cs[len(cs)-1].Name
}
