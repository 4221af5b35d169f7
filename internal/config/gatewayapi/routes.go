package gatewayapi

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/model"
)

// ruleRoute is one rule turned into model routes, one per match (precedence orders
// matches, not rules).
type ruleRoute struct {
	index   int
	matches []matchRoute
}

type matchRoute struct {
	key   matchKey
	route model.GatewayRoute
	// listenerPort: the route redirects without scheme or port, so the Location gets
	// the port of the listener it is attached to.
	listenerPort bool
}

func (r *resolver) httpRoute(rt *HTTPRoute) {
	var rules []ruleRoute
	resolvedOK, reason, msg := true, string(gwv1.RouteReasonResolvedRefs), ""
	acceptErr := ""
	unsupported := func(i int, e string) {
		if e != "" && acceptErr == "" {
			acceptErr = fmt.Sprintf("spec.rules[%d]: %s", i, e)
		}
	}
	for i, rule := range rt.Spec.Rules {
		acts := r.httpActions(KindHTTPRoute, &rt.Meta, rule.Filters)
		unsupported(i, acts.unsupported)
		if acts.refReason != "" && resolvedOK {
			resolvedOK, reason, msg = false, acts.refReason, acts.refMsg
		}
		refs := make([]gwv1.BackendRef, 0, len(rule.BackendRefs))
		var destHeaders []*model.Headers
		for _, b := range rule.BackendRefs {
			refs = append(refs, b.BackendRef)
			var h *model.Headers
			for _, f := range b.Filters {
				switch f.Type {
				case gwv1.HTTPRouteFilterRequestHeaderModifier:
					h = withOps(h, true, f.RequestHeaderModifier)
				case gwv1.HTTPRouteFilterResponseHeaderModifier:
					h = withOps(h, false, f.ResponseHeaderModifier)
				default:
					unsupported(i, fmt.Sprintf("backendRef filter %s is not supported by skein", f.Type))
				}
			}
			destHeaders = append(destHeaders, h)
		}
		be := r.backends(KindHTTPRoute, &rt.Meta, refs)
		for j, idx := range be.index {
			be.dests[j].Headers = destHeaders[idx]
		}
		if be.reason != "" && resolvedOK {
			resolvedOK, reason, msg = false, be.reason, be.msg
		}
		var reqTimeout, beTimeout time.Duration
		if t := rule.Timeouts; t != nil {
			if t.Request != nil {
				reqTimeout, _ = ParseDuration(*t.Request)
			}
			if t.BackendRequest != nil {
				beTimeout, _ = ParseDuration(*t.BackendRequest)
			}
		}
		retries, e := retryPolicy(rule.Retry, beTimeout)
		unsupported(i, e)
		timeout := reqTimeout
		if retries == nil {
			// Without retries one backend request is the whole request: the shorter wins.
			timeout = ruleTimeout(reqTimeout, beTimeout)
		}
		base := model.GatewayRoute{
			HTTPRoute:     model.HTTPRoute{Destinations: be.dests, Timeout: timeout, Retries: retries},
			Owner:         KindHTTPRoute + "/" + rt.Namespace + "/" + rt.Name,
			InvalidWeight: be.invalid,
		}
		if len(be.dests) == 0 && base.InvalidWeight == 0 && acts.redirect == nil {
			base.InvalidWeight = 1 // nothing to send to: 500, as the spec requires
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		rr := ruleRoute{index: i}
		for j, m := range matches {
			hms, kinds, key := httpMatch(m)
			for k, hm := range hms {
				gr := base
				gr.Name = fmt.Sprintf("%s.%s.%d.%d", rt.Name, rt.Namespace, i, j)
				if len(hms) > 1 {
					gr.Name += "." + strconv.Itoa(k)
				}
				gr.Matches = []model.HTTPMatch{hm}
				needPort := acts.applyActions(&gr, kinds[k])
				rr.matches = append(rr.matches, matchRoute{key: key, route: gr, listenerPort: needPort})
			}
		}
		rules = append(rules, rr)
	}
	parents := r.attachRoute(routeRef{
		kind: KindHTTPRoute, meta: &rt.Meta, parents: rt.Spec.ParentRefs, hostnames: rt.Spec.Hostnames,
		attach: func(ls *listenerState, hosts []string) { attachRules(ls, hosts, &rt.Meta, rules) },
		mesh: func(svc *model.Service, port int) {
			host := svc.Hostname(r.in.Suffix)
			for _, rr := range rules {
				for j, mr := range rr.matches {
					route := mr.route
					if port != 0 {
						route.Matches = withPort(route.Matches, port)
					}
					r.meshRoutes[host] = append(r.meshRoutes[host], &attachedRule{hostname: host, route: route, meta: &rt.Meta, rule: rr.index, match: j, key: mr.key})
				}
			}
		},
	}, resolvedOK, reason, msg, acceptErr)
	r.setRouteStatus(&rt.Meta, parents)
}

func withPort(ms []model.HTTPMatch, port int) []model.HTTPMatch {
	out := make([]model.HTTPMatch, len(ms))
	for i, m := range ms {
		m.Port = port
		out[i] = m
	}
	return out
}

func attachRules(ls *listenerState, hosts []string, meta *Meta, rules []ruleRoute) {
	for _, h := range hosts {
		for _, rr := range rules {
			for j, mr := range rr.matches {
				route := mr.route
				if mr.listenerPort && route.Redirect != nil {
					rd := *route.Redirect
					rd.Port = int(ls.spec.Port) // neither scheme nor port given: the listener's
					route.Redirect = &rd
				}
				ls.routes = append(ls.routes, &attachedRule{hostname: h, route: route, meta: meta, rule: rr.index, match: j, key: mr.key})
			}
		}
	}
}

func ruleTimeout(req, be time.Duration) time.Duration {
	switch {
	case req == 0:
		return be
	case be == 0:
		return req
	}
	return min(req, be)
}

// httpMatch turns one HTTPRouteMatch into model matches (a PathPrefix becomes two:
// the path itself and everything under it, the spec's element-wise prefix), the kind
// of path each serves, and the precedence key.
func httpMatch(m gwv1.HTTPRouteMatch) ([]model.HTTPMatch, []pathKind, matchKey) {
	var key matchKey
	base := model.HTTPMatch{}
	for _, h := range m.Headers {
		if base.Headers == nil {
			base.Headers = map[string]model.StringMatch{}
		}
		kind := model.MatchExact
		if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
			kind = model.MatchRegex
		}
		base.Headers[strings.ToLower(string(h.Name))] = model.StringMatch{Kind: kind, Value: h.Value}
		key.headers++
	}
	for _, q := range m.QueryParams {
		if base.QueryParams == nil {
			base.QueryParams = map[string]model.StringMatch{}
		}
		kind := model.MatchExact
		if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
			kind = model.MatchRegex
		}
		base.QueryParams[string(q.Name)] = model.StringMatch{Kind: kind, Value: q.Value}
		key.queries++
	}
	if m.Method != nil {
		base.Method = &model.StringMatch{Kind: model.MatchExact, Value: string(*m.Method)}
		key.method = true
	}
	t, v := gwv1.PathMatchPathPrefix, "/"
	if m.Path != nil {
		if m.Path.Type != nil {
			t = *m.Path.Type
		}
		if m.Path.Value != nil {
			v = *m.Path.Value
		}
	}
	key.pathLen = len(v)
	with := func(kind model.MatchKind, value string) model.HTTPMatch {
		c := base
		c.URI = &model.StringMatch{Kind: kind, Value: value}
		return c
	}
	switch t {
	case gwv1.PathMatchExact:
		key.pathRank = 0
		return []model.HTTPMatch{with(model.MatchExact, v)}, []pathKind{pathExact}, key
	case gwv1.PathMatchRegularExpression:
		key.pathRank = 1
		return []model.HTTPMatch{with(model.MatchRegex, v)}, []pathKind{pathRegex}, key
	}
	key.pathRank = 2
	trimmed := strings.TrimRight(v, "/")
	if trimmed == "" {
		return []model.HTTPMatch{with(model.MatchPrefix, "/")}, []pathKind{pathPrefix}, key
	}
	return []model.HTTPMatch{with(model.MatchExact, trimmed), with(model.MatchPrefix, trimmed+"/")}, []pathKind{pathExact, pathPrefix}, key
}

func (r *resolver) grpcRoute(rt *GRPCRoute) {
	var rules []ruleRoute
	resolvedOK, reason, msg := true, string(gwv1.RouteReasonResolvedRefs), ""
	acceptErr := ""
	for i, rule := range rt.Spec.Rules {
		var filters []gwv1.HTTPRouteFilter
		for _, f := range rule.Filters {
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier:
				filters = append(filters, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: f.RequestHeaderModifier})
			case gwv1.GRPCRouteFilterResponseHeaderModifier:
				filters = append(filters, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier})
			case gwv1.GRPCRouteFilterRequestMirror:
				filters = append(filters, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestMirror, RequestMirror: f.RequestMirror})
			default:
				if acceptErr == "" {
					acceptErr = fmt.Sprintf("spec.rules[%d]: filter %s is not supported by skein", i, f.Type)
				}
			}
		}
		acts := r.httpActions(KindGRPCRoute, &rt.Meta, filters)
		if acts.refReason != "" && resolvedOK {
			resolvedOK, reason, msg = false, acts.refReason, acts.refMsg
		}
		refs := make([]gwv1.BackendRef, 0, len(rule.BackendRefs))
		for _, b := range rule.BackendRefs {
			refs = append(refs, b.BackendRef)
			if len(b.Filters) > 0 && acceptErr == "" {
				acceptErr = fmt.Sprintf("spec.rules[%d]: backendRef filters are not supported by skein yet", i)
			}
		}
		be := r.backends(KindGRPCRoute, &rt.Meta, refs)
		if be.reason != "" && resolvedOK {
			resolvedOK, reason, msg = false, be.reason, be.msg
		}
		base := model.GatewayRoute{
			HTTPRoute:     model.HTTPRoute{Destinations: be.dests},
			Owner:         KindGRPCRoute + "/" + rt.Namespace + "/" + rt.Name,
			InvalidWeight: be.invalid,
			GRPC:          true,
		}
		if len(be.dests) == 0 && base.InvalidWeight == 0 {
			base.InvalidWeight = 1
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		rr := ruleRoute{index: i}
		for j, m := range matches {
			gr := base
			gr.Name = fmt.Sprintf("%s.%s.%d.%d", rt.Name, rt.Namespace, i, j)
			hm, key := grpcMatch(m)
			gr.Matches = []model.HTTPMatch{hm}
			acts.applyActions(&gr, pathExact)
			rr.matches = append(rr.matches, matchRoute{key: key, route: gr})
		}
		rules = append(rules, rr)
	}
	parents := r.attachRoute(routeRef{
		kind: KindGRPCRoute, meta: &rt.Meta, parents: rt.Spec.ParentRefs, hostnames: rt.Spec.Hostnames,
		attach: func(ls *listenerState, hosts []string) { attachRules(ls, hosts, &rt.Meta, rules) },
	}, resolvedOK, reason, msg, acceptErr)
	r.setRouteStatus(&rt.Meta, parents)
}

// grpcMatch matches the request path /<service>/<method>, as gRPC over HTTP/2 sends it.
func grpcMatch(m gwv1.GRPCRouteMatch) (model.HTTPMatch, matchKey) {
	var key matchKey
	hm := model.HTTPMatch{URI: &model.StringMatch{Kind: model.MatchPrefix, Value: "/"}}
	for _, h := range m.Headers {
		if hm.Headers == nil {
			hm.Headers = map[string]model.StringMatch{}
		}
		kind := model.MatchExact
		if h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression {
			kind = model.MatchRegex
		}
		hm.Headers[strings.ToLower(string(h.Name))] = model.StringMatch{Kind: kind, Value: h.Value}
		key.headers++
	}
	if mm := m.Method; mm != nil {
		svc, method := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		key.grpcSvcLen, key.grpcMthLen = len(svc), len(method)
		regex := mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression
		switch {
		case regex:
			s, me := svc, method
			if s == "" {
				s = `[^/]+`
			}
			if me == "" {
				me = `[^/]+`
			}
			hm.URI = &model.StringMatch{Kind: model.MatchRegex, Value: "/" + s + "/" + me}
		case svc != "" && method != "":
			hm.URI = &model.StringMatch{Kind: model.MatchExact, Value: "/" + svc + "/" + method}
		case svc != "":
			hm.URI = &model.StringMatch{Kind: model.MatchPrefix, Value: "/" + svc + "/"}
		default:
			hm.URI = &model.StringMatch{Kind: model.MatchRegex, Value: `/[^/]+/` + regexp.QuoteMeta(method)}
		}
	}
	return hm, key
}

func (r *resolver) tlsRoute(rt *TLSRoute) {
	var dests []model.RouteDestination
	resolvedOK, reason, msg := true, string(gwv1.RouteReasonResolvedRefs), ""
	for _, rule := range rt.Spec.Rules {
		be := r.backends(KindTLSRoute, &rt.Meta, rule.BackendRefs)
		if be.reason != "" && resolvedOK {
			resolvedOK, reason, msg = false, be.reason, be.msg
		}
		dests = append(dests, be.dests...)
	}
	owner := KindTLSRoute + "/" + rt.Namespace + "/" + rt.Name
	parents := r.attachRoute(routeRef{
		kind: KindTLSRoute, meta: &rt.Meta, parents: rt.Spec.ParentRefs, hostnames: rt.Spec.Hostnames,
		attach: func(ls *listenerState, hosts []string) {
			var names []string
			for _, h := range hosts {
				if h != "*" {
					names = append(names, h)
				}
			}
			if ls.tls != nil {
				// A terminating TLS listener: the route's backends get the decrypted stream.
				if ls.tcp == nil {
					ls.tcp = dests
				}
				return
			}
			ls.sni = append(ls.sni, model.GatewaySNIRoute{Hostnames: names, Destinations: dests, Owner: owner})
		},
	}, resolvedOK, reason, msg, "")
	r.setRouteStatus(&rt.Meta, parents)
}

func (r *resolver) tcpRoute(rt *TCPRoute) {
	var dests []model.RouteDestination
	resolvedOK, reason, msg := true, string(gwv1.RouteReasonResolvedRefs), ""
	for _, rule := range rt.Spec.Rules {
		be := r.backends(KindTCPRoute, &rt.Meta, rule.BackendRefs)
		if be.reason != "" && resolvedOK {
			resolvedOK, reason, msg = false, be.reason, be.msg
		}
		dests = append(dests, be.dests...)
	}
	parents := r.attachRoute(routeRef{
		kind: KindTCPRoute, meta: &rt.Meta, parents: rt.Spec.ParentRefs,
		attach: func(ls *listenerState, _ []string) {
			// One TCP listener forwards to one route's backends: the first attached.
			if ls.tcpOwner == nil {
				ls.tcp, ls.tcpOwner = dests, &rt.Meta
			}
		},
	}, resolvedOK, reason, msg, "")
	r.setRouteStatus(&rt.Meta, parents)
}

// finishMeshRoutes orders the routes attached to each Service (GAMMA).
func (r *resolver) finishMeshRoutes() {
	if len(r.meshRoutes) == 0 {
		return
	}
	r.out.MeshRoutes = map[string][]model.GatewayRoute{}
	for host, list := range r.meshRoutes {
		sort.SliceStable(list, func(i, j int) bool { return precedes(list[i], list[j]) })
		for _, ar := range list {
			r.out.MeshRoutes[host] = append(r.out.MeshRoutes[host], ar.route)
		}
	}
}
