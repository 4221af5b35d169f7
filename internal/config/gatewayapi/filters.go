package gatewayapi

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/model"
)

// Filters become the shared route actions of the model (model/route.go): the same
// fields an Istio VirtualService sets, so the translator and the proxy have one
// implementation of each.

// ruleActions is what a rule's filters do to every route made from its matches.
type ruleActions struct {
	headers     *model.Headers
	redirect    *gwv1.HTTPRequestRedirectFilter
	rewrite     *gwv1.HTTPURLRewriteFilter
	mirrors     []model.Mirror
	cors        *model.CORSPolicy
	unsupported string // a filter skein cannot serve: the route is not Accepted
	// refReason/refMsg: a mirror backend that does not resolve (ResolvedRefs).
	refReason, refMsg string
}

// httpActions reads a rule's filters.
func (r *resolver) httpActions(fromKind string, meta *Meta, filters []gwv1.HTTPRouteFilter) ruleActions {
	var a ruleActions
	for _, f := range filters {
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			a.headers = withOps(a.headers, true, f.RequestHeaderModifier)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			a.headers = withOps(a.headers, false, f.ResponseHeaderModifier)
		case gwv1.HTTPRouteFilterRequestRedirect:
			a.redirect = f.RequestRedirect
		case gwv1.HTTPRouteFilterURLRewrite:
			a.rewrite = f.URLRewrite
		case gwv1.HTTPRouteFilterRequestMirror:
			r.addMirror(&a, fromKind, meta, f.RequestMirror)
		case gwv1.HTTPRouteFilterCORS:
			a.cors = corsPolicy(f.CORS)
		default:
			a.unsupported = fmt.Sprintf("filter %s is not supported by skein", f.Type)
		}
	}
	return a
}

func (r *resolver) addMirror(a *ruleActions, fromKind string, meta *Meta, m *gwv1.HTTPRequestMirrorFilter) {
	ref := gwv1.BackendRef{BackendObjectReference: m.BackendRef}
	be := r.backends(fromKind, meta, []gwv1.BackendRef{ref})
	if len(be.dests) == 0 {
		if a.refReason == "" {
			a.refReason, a.refMsg = be.reason, "mirror: "+be.msg
		}
		return
	}
	pct := 100.0
	switch {
	case m.Percent != nil:
		pct = float64(*m.Percent)
	case m.Fraction != nil:
		den := int32(100)
		if m.Fraction.Denominator != nil {
			den = *m.Fraction.Denominator
		}
		pct = float64(m.Fraction.Numerator) * 100 / float64(den)
	}
	d := be.dests[0]
	d.Weight = 0
	a.mirrors = append(a.mirrors, model.Mirror{Destination: d, Percent: pct})
}

// withOps adds a header modifier to the request or response side.
func withOps(h *model.Headers, request bool, f *gwv1.HTTPHeaderFilter) *model.Headers {
	if h == nil {
		h = &model.Headers{}
	}
	ops := &h.Response
	if request {
		ops = &h.Request
	}
	for _, s := range f.Set {
		if ops.Set == nil {
			ops.Set = map[string]string{}
		}
		ops.Set[strings.ToLower(string(s.Name))] = s.Value
	}
	for _, s := range f.Add {
		if ops.Add == nil {
			ops.Add = map[string]string{}
		}
		ops.Add[strings.ToLower(string(s.Name))] = s.Value
	}
	for _, n := range f.Remove {
		ops.Remove = append(ops.Remove, strings.ToLower(n))
	}
	return h
}

// corsPolicy converts the CORS filter; origins with "*" become regular expressions
// ("*" alone: any origin; in the host: any labels to its left).
func corsPolicy(c *gwv1.HTTPCORSFilter) *model.CORSPolicy {
	out := &model.CORSPolicy{AllowCredentials: c.AllowCredentials, MaxAge: 5 * time.Second}
	if c.MaxAge > 0 {
		out.MaxAge = time.Duration(c.MaxAge) * time.Second
	}
	for _, o := range c.AllowOrigins {
		s := string(o)
		switch {
		case s == "*":
			out.AllowOrigins = append(out.AllowOrigins, model.StringMatch{Kind: model.MatchRegex, Value: ".*"})
		case strings.Contains(s, "*"):
			re := strings.ReplaceAll(regexp.QuoteMeta(s), `\*`, `.*`)
			out.AllowOrigins = append(out.AllowOrigins, model.StringMatch{Kind: model.MatchRegex, Value: re})
		default:
			out.AllowOrigins = append(out.AllowOrigins, model.StringMatch{Kind: model.MatchExact, Value: s})
		}
	}
	for _, m := range c.AllowMethods {
		out.AllowMethods = append(out.AllowMethods, string(m))
	}
	for _, h := range c.AllowHeaders {
		out.AllowHeaders = append(out.AllowHeaders, string(h))
	}
	for _, h := range c.ExposeHeaders {
		out.ExposeHeaders = append(out.ExposeHeaders, string(h))
	}
	return out
}

// pathKind says which of the model matches of one Gateway API match a route serves:
// PathPrefix /p becomes an exact /p route and a prefix /p/ route.
type pathKind int

const (
	pathExact  pathKind = iota // Exact, or the /p half of PathPrefix /p
	pathPrefix                 // the /p/ half of PathPrefix (or prefix /)
	pathRegex
)

// applyActions sets the actions on one route. listenerPort is filled at attachment
// when a redirect keeps the listener's port (see attachRules).
func (a ruleActions) applyActions(gr *model.GatewayRoute, kind pathKind) (redirectNeedsPort bool) {
	gr.Headers = a.headers
	gr.Mirrors = a.mirrors
	gr.CORS = a.cors
	if rd := a.redirect; rd != nil {
		out := &model.HTTPRedirect{Code: 302}
		if rd.StatusCode != nil {
			out.Code = *rd.StatusCode
		}
		if rd.Scheme != nil {
			out.Scheme = *rd.Scheme
		}
		if rd.Hostname != nil {
			out.Authority = string(*rd.Hostname)
		}
		switch {
		case rd.Port != nil:
			out.Port = int(*rd.Port)
		case rd.Scheme != nil:
			// The scheme's well-known port, which the proxy leaves out of Location.
			out.Port = 80
			if *rd.Scheme == "https" {
				out.Port = 443
			}
		default:
			redirectNeedsPort = true // the listener's port, set when attached
		}
		if p := rd.Path; p != nil {
			switch p.Type {
			case gwv1.FullPathHTTPPathModifier:
				out.URI = *p.ReplaceFullPath
			case gwv1.PrefixMatchHTTPPathModifier:
				if kind == pathPrefix {
					out.PrefixRewrite = prefixReplacement(*p.ReplacePrefixMatch)
				} else {
					out.URI = fullReplacement(*p.ReplacePrefixMatch)
				}
			}
		}
		gr.Redirect = out
		gr.Destinations, gr.InvalidWeight = nil, 0
	}
	if rw := a.rewrite; rw != nil {
		out := &model.HTTPRewrite{}
		if rw.Hostname != nil {
			out.Authority = string(*rw.Hostname)
		}
		if p := rw.Path; p != nil {
			switch {
			case p.Type == gwv1.FullPathHTTPPathModifier && kind == pathPrefix:
				// The proxy replaces a prefix route's matched prefix only: replace it all.
				out.URIRegex = &model.RegexRewrite{Match: "^.*$", Rewrite: *p.ReplaceFullPath}
			case p.Type == gwv1.FullPathHTTPPathModifier:
				out.URI = *p.ReplaceFullPath
			case kind == pathPrefix:
				out.URI = prefixReplacement(*p.ReplacePrefixMatch)
			default:
				out.URI = fullReplacement(*p.ReplacePrefixMatch)
			}
		}
		gr.Rewrite = out
	}
	return redirectNeedsPort
}

// prefixReplacement is what replaces the matched "/p/" of a PathPrefix /p route, so
// that the spec's table holds: /foo/bar with prefix /foo and replacement /xyz, /xyz/ or
// "" gives /xyz/bar, /xyz/bar and /bar.
func prefixReplacement(r string) string { return strings.TrimRight(r, "/") + "/" }

// fullReplacement is the path when the request path is the prefix itself: /foo with
// replacement /xyz gives /xyz, with "" or "/" gives "/".
func fullReplacement(r string) string {
	if t := strings.TrimRight(r, "/"); t != "" {
		return t
	}
	return "/"
}

// retryPolicy converts HTTPRouteRetry; backendRequest is the per-try timeout.
func retryPolicy(rt *gwv1.HTTPRouteRetry, perTry time.Duration) (*model.RetryPolicy, string) {
	if rt == nil {
		return nil, ""
	}
	if rt.Backoff != nil {
		return nil, "retry.backoff is not supported by skein yet"
	}
	p := &model.RetryPolicy{Attempts: 1, PerTryTimeout: perTry, RetryOn: []string{"connect-failure", "refused-stream"}}
	if rt.Attempts != nil {
		p.Attempts = *rt.Attempts
	}
	if len(rt.Codes) > 0 {
		p.RetryOn = append(p.RetryOn, "retriable-status-codes")
		for _, c := range rt.Codes {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, int(c))
		}
	}
	return p, ""
}
