package model

import "strings"

// Delegation (Istio's VirtualService `delegate`): a root VirtualService's rule hands the
// requests it matches to the rules of a delegate VirtualService (one without hosts).
// ResolveDelegates merges them as Istio does, so the rest of skein only ever sees
// plain VirtualServices.

// IsDelegate reports whether a VirtualService is a delegate: it has no hosts and only
// applies through a root's rules.
func (vs *VirtualService) IsDelegate() bool { return len(vs.Hosts) == 0 }

// ResolveDelegates returns the VirtualServices with every root's delegating rules
// replaced by the delegate's rules merged with the root rule, and the delegates
// themselves left out. As Istio: each delegate rule's matches must each fall within one
// of the root rule's matches (a narrower URI prefix or exact path, equal exact values,
// no regex), else that delegate rule is dropped; the delegate rule's name is prefixed
// by the root's; actions the delegate rule does not set come from the root rule. A
// delegate that does not exist drops the rule (the config loader reports it first).
func ResolveDelegates(vses []*VirtualService) []*VirtualService {
	delegates := map[NamespacedName]*VirtualService{}
	roots := false
	for _, vs := range vses {
		if vs.IsDelegate() {
			delegates[vs.NamespacedName] = vs
		}
		roots = roots || hasDelegation(vs)
	}
	if len(delegates) == 0 && !roots {
		return vses
	}
	var out []*VirtualService
	for _, vs := range vses {
		if vs.IsDelegate() {
			continue
		}
		if !hasDelegation(vs) {
			out = append(out, vs)
			continue
		}
		merged := *vs
		merged.HTTP = nil
		for _, r := range vs.HTTP {
			if r.Delegate == nil {
				merged.HTTP = append(merged.HTTP, r)
				continue
			}
			d := delegates[*r.Delegate]
			if d == nil {
				continue
			}
			for _, sub := range d.HTTP {
				if m, ok := mergeHTTPRoute(r, sub); ok {
					merged.HTTP = append(merged.HTTP, m)
				}
			}
		}
		out = append(out, &merged)
	}
	return out
}

func hasDelegation(vs *VirtualService) bool {
	for _, r := range vs.HTTP {
		if r.Delegate != nil {
			return true
		}
	}
	return false
}

func mergeHTTPRoute(root, sub HTTPRoute) (HTTPRoute, bool) {
	matches, ok := mergeMatches(root.Matches, sub.Matches)
	if !ok {
		return HTTPRoute{}, false
	}
	out := sub
	out.Matches = matches
	out.Delegate = nil
	switch {
	case out.Name == "":
		out.Name = root.Name
	case root.Name != "":
		out.Name = root.Name + "-" + out.Name
	}
	if out.Rewrite == nil {
		out.Rewrite = root.Rewrite
	}
	if out.Timeout == 0 {
		out.Timeout = root.Timeout
	}
	if out.Retries == nil {
		out.Retries = root.Retries
	}
	if out.Fault == nil {
		out.Fault = root.Fault
	}
	if len(out.Mirrors) == 0 {
		out.Mirrors = root.Mirrors
	}
	if out.CORS == nil {
		out.CORS = root.CORS
	}
	if out.Headers == nil {
		out.Headers = root.Headers
	}
	return out, true
}

// mergeMatches pairs every delegate match with each root match it does not conflict
// with; a delegate match that fits no root match makes the delegate rule unusable.
func mergeMatches(root, sub []HTTPMatch) ([]HTTPMatch, bool) {
	if len(root) == 0 {
		return sub, true
	}
	if len(sub) == 0 {
		return root, true
	}
	var out []HTTPMatch
	for _, s := range sub {
		found := false
		for _, r := range root {
			if matchConflict(r, s) {
				continue
			}
			out = append(out, mergeMatch(r, s))
			found = true
		}
		if !found {
			return nil, false
		}
	}
	return out, len(out) > 0
}

func mergeMatch(root, sub HTTPMatch) HTTPMatch {
	out := sub
	switch {
	case out.Name == "":
		out.Name = root.Name
	case root.Name != "":
		out.Name = root.Name + "-" + out.Name
	}
	if out.URI == nil {
		out.URI = root.URI
	}
	if out.Scheme == nil {
		out.Scheme = root.Scheme
	}
	if out.Method == nil {
		out.Method = root.Method
	}
	if out.Authority == nil {
		out.Authority = root.Authority
	}
	out.Headers = mergeStringMatches(root.Headers, sub.Headers)
	out.WithoutHeaders = mergeStringMatches(root.WithoutHeaders, sub.WithoutHeaders)
	out.QueryParams = mergeStringMatches(root.QueryParams, sub.QueryParams)
	if out.Port == 0 {
		out.Port = root.Port
	}
	// Source conditions come from the root: they select callers, not requests.
	out.SourceLabels, out.SourceNamespace = root.SourceLabels, root.SourceNamespace
	return out
}

func mergeStringMatches(a, b map[string]StringMatch) map[string]StringMatch {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[string]StringMatch, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func matchConflict(root, sub HTTPMatch) bool {
	pairs := [][2]*StringMatch{{root.URI, sub.URI}, {root.Scheme, sub.Scheme}, {root.Method, sub.Method}, {root.Authority, sub.Authority}}
	for _, p := range pairs {
		if stringMatchConflict(p[0], p[1]) {
			return true
		}
	}
	for k, v := range sub.Headers {
		if rv, ok := root.Headers[k]; ok && stringMatchConflict(&rv, &v) {
			return true
		}
	}
	for k, v := range sub.WithoutHeaders {
		if rv, ok := root.Headers[k]; ok && stringMatchConflict(&rv, &v) {
			return true
		}
	}
	for k, v := range sub.QueryParams {
		if rv, ok := root.QueryParams[k]; ok && stringMatchConflict(&rv, &v) {
			return true
		}
	}
	if root.IgnoreURICase != sub.IgnoreURICase {
		return true
	}
	return root.Port > 0 && sub.Port > 0 && root.Port != sub.Port
}

// stringMatchConflict is Istio's rule: the delegate's condition must be as narrow as
// the root's; regexes and presence checks cannot be compared, so they conflict.
func stringMatchConflict(root, sub *StringMatch) bool {
	if root == nil || sub == nil {
		return false
	}
	if root.Kind == MatchRegex || sub.Kind == MatchRegex {
		return true
	}
	switch root.Kind {
	case MatchExact:
		return sub.Kind != MatchExact || sub.Value != root.Value
	case MatchPrefix:
		if sub.Kind == MatchPrefix || sub.Kind == MatchExact {
			return !strings.HasPrefix(sub.Value, root.Value)
		}
	}
	return true
}
