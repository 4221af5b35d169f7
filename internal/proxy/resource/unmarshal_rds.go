package resource

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// RouteConfig validates and unmarshals one RDS resource.
func (d *Decoder) RouteConfig(a *anypb.Any) (Decoded[*RouteConfig], error) {
	pb := &routev3.RouteConfiguration{}
	if err := decode(a, RouteType, pb); err != nil {
		return Decoded[*RouteConfig]{}, &UnmarshalError{Type: "RouteConfiguration", Err: err}
	}
	rc, err := d.routeConfig(pb)
	if err != nil {
		return Decoded[*RouteConfig]{}, &UnmarshalError{Type: "RouteConfiguration", Name: pb.GetName(), Err: err}
	}
	return Decoded[*RouteConfig]{Name: rc.Name, Resource: rc, Proto: pb}, nil
}

func (d *Decoder) routeConfig(pb *routev3.RouteConfiguration) (*RouteConfig, error) {
	if err := d.allow.Message(pb); err != nil {
		return nil, err
	}
	rc := &RouteConfig{Name: pb.GetName()}
	seenDomain := map[string]string{}
	for i, vh := range pb.GetVirtualHosts() {
		v := VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		if len(v.Domains) == 0 {
			return nil, fmt.Errorf("virtual_hosts[%d].domains: %w", i, errMissing)
		}
		for _, dom := range v.Domains {
			key := strings.ToLower(dom)
			if other, dup := seenDomain[key]; dup {
				// Envoy rejects duplicate domains across virtual hosts too.
				return nil, fmt.Errorf("virtual_hosts[%d]: domain %q already in virtual host %q", i, dom, other)
			}
			seenDomain[key] = v.Name
		}
		for j, r := range vh.GetRoutes() {
			route, err := routeEntry(r)
			if err != nil {
				return nil, fmt.Errorf("virtual_hosts[%d].routes[%d]: %w", i, j, err)
			}
			v.Routes = append(v.Routes, route)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, v)
	}
	return rc, nil
}

func routeEntry(pb *routev3.Route) (Route, error) {
	r := Route{Name: pb.GetName()}
	m := pb.GetMatch()
	if m == nil {
		return r, fmt.Errorf("match: %w", errMissing)
	}
	r.Match.CaseSensitive = m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		r.Match.Kind, r.Match.Path = PathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		r.Match.Kind, r.Match.Path = PathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(ps.SafeRegex.GetRegex(), !r.Match.CaseSensitive)
		if err != nil {
			return r, fmt.Errorf("match.safe_regex: %w", err)
		}
		r.Match.Kind, r.Match.Regex = PathRegex, re
	default:
		return r, errors.New("match: one of prefix, path or safe_regex is required")
	}
	if !r.Match.CaseSensitive {
		r.Match.Path = strings.ToLower(r.Match.Path)
	}
	for i, h := range m.GetHeaders() {
		hm, err := headerMatcher(h)
		if err != nil {
			return r, fmt.Errorf("match.headers[%d]: %w", i, err)
		}
		r.Match.Headers = append(r.Match.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm := QueryMatcher{Name: q.GetName()}
		if qm.Name == "" {
			return r, fmt.Errorf("match.query_parameters[%d].name: %w", i, errMissing)
		}
		switch {
		case q.GetPresentMatch():
			qm.Present = true
		case q.GetStringMatch() != nil:
			sm, err := stringMatcher(q.GetStringMatch(), fmt.Sprintf("match.query_parameters[%d].string_match", i))
			if err != nil {
				return r, err
			}
			qm.Match = sm
		default:
			return r, fmt.Errorf("match.query_parameters[%d]: string_match or present_match is required", i)
		}
		r.Match.Query = append(r.Match.Query, qm)
	}
	if err := routeExtras(&r, pb); err != nil {
		return r, err
	}
	if rd := pb.GetRedirect(); rd != nil {
		if pb.GetRoute() != nil {
			return r, errors.New("route and redirect are exclusive")
		}
		var err error
		if r.Redirect, err = redirectAction(rd); err != nil {
			return r, fmt.Errorf("redirect: %w", err)
		}
		if r.Redirect.HasPrefix && r.Match.Kind == PathPrefix {
			r.Redirect.MatchPrefix = r.Match.Path
		}
		return r, nil
	}
	if dr := pb.GetDirectResponse(); dr != nil {
		st := int(dr.GetStatus())
		if st < 200 || st > 599 {
			return r, fmt.Errorf("direct_response.status %d out of range [200, 599]", st)
		}
		r.Direct = &DirectResponse{Status: st}
		if body := dr.GetBody(); body != nil {
			switch s := body.GetSpecifier().(type) {
			case *corev3.DataSource_InlineString:
				r.Direct.Body = s.InlineString
			case *corev3.DataSource_InlineBytes:
				r.Direct.Body = string(s.InlineBytes)
			default:
				return r, errors.New("direct_response.body: only inline_string or inline_bytes is supported")
			}
		}
		return r, nil
	}
	action := pb.GetRoute()
	if action == nil {
		return r, fmt.Errorf("route: %w", errMissing)
	}
	switch action.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
	case routev3.RouteAction_NOT_FOUND:
		r.ClusterNotFoundStatus = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		r.ClusterNotFoundStatus = http.StatusInternalServerError
	default:
		return r, fmt.Errorf("route.cluster_not_found_response_code %v is not supported", action.GetClusterNotFoundResponseCode())
	}
	switch {
	case action.GetCluster() != "":
		r.Clusters = []WeightedCluster{{Name: action.GetCluster(), Weight: 1}}
	case action.GetWeightedClusters() != nil:
		var total uint64
		for i, c := range action.GetWeightedClusters().GetClusters() {
			if c.GetName() == "" {
				return r, fmt.Errorf("route.weighted_clusters.clusters[%d].name: %w", i, errMissing)
			}
			w := c.GetWeight().GetValue()
			r.Clusters = append(r.Clusters, WeightedCluster{Name: c.GetName(), Weight: w})
			total += uint64(w)
		}
		if total == 0 {
			return r, errors.New("route.weighted_clusters: total weight must be positive")
		}
	default:
		return r, errors.New("route: one of cluster or weighted_clusters is required")
	}
	if t := action.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return r, fmt.Errorf("route.timeout invalid: %v", t)
		}
		r.Timeout = t.AsDuration()
	}
	if err := routeForward(&r, action); err != nil {
		return r, err
	}
	var err error
	if r.HashPolicies, err = hashPolicies(action); err != nil { // hash_policy.go
		return r, err
	}
	return r, nil
}

func headerMatcher(pb *routev3.HeaderMatcher) (HeaderMatcher, error) {
	h := HeaderMatcher{Name: http.CanonicalHeaderKey(pb.GetName()), Invert: pb.GetInvertMatch()}
	if pb.GetName() == "" {
		return h, fmt.Errorf("name: %w", errMissing)
	}
	switch spec := pb.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		if !spec.PresentMatch {
			// present_match: false means "absent", the same as an inverted presence check.
			h.Invert = !h.Invert
		}
		h.Present = true
	case *routev3.HeaderMatcher_StringMatch:
		sm := spec.StringMatch
		h.IgnoreCase = sm.GetIgnoreCase()
		switch p := sm.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			h.Kind, h.Value = StringExact, p.Exact
		case *matcherv3.StringMatcher_Prefix:
			h.Kind, h.Value = StringPrefix, p.Prefix
		case *matcherv3.StringMatcher_Suffix:
			h.Kind, h.Value = StringSuffix, p.Suffix
		case *matcherv3.StringMatcher_Contains:
			h.Kind, h.Value = StringContains, p.Contains
		case *matcherv3.StringMatcher_SafeRegex:
			re, err := compileRegex(p.SafeRegex.GetRegex(), false)
			if err != nil {
				return h, fmt.Errorf("string_match.safe_regex: %w", err)
			}
			if h.IgnoreCase {
				return h, errors.New("string_match: ignore_case has no effect on safe_regex")
			}
			h.Kind, h.Regex = StringRegex, re
		default:
			return h, errors.New("string_match: a pattern is required")
		}
		if h.IgnoreCase {
			h.Value = strings.ToLower(h.Value)
		}
	default:
		return h, errors.New("one of string_match or present_match is required")
	}
	return h, nil
}
