package analyze

import (
	"fmt"
	"reflect"
	"strings"

	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/model"
)

// Traffic management codes (SK02xx). The loader refuses four kinds of mistake and marks
// them with their code (istio.Code*): they are reported under that code with its hint
// instead of SK0001. The other two are checks on a loaded mesh: it works, but not as
// written.
const (
	CodeUnknownSubset     = istio.CodeUnknownSubset // SK0201
	CodeUnknownHost       = istio.CodeUnknownHost   // SK0202
	CodeUnreachableMatch  = "SK0203"
	CodeWeightSum         = istio.CodeWeightSum // SK0204
	CodeConflictingVS     = "SK0205"
	CodeRuleWithoutTarget = istio.CodeRuleNoService // SK0206
)

// codedHints are the hints of the codes the loader puts on its errors.
var codedHints = map[string]string{
	CodeUnknownSubset:     "define the subset in the host's DestinationRule (spec.subsets[].name), or fix the name in the route",
	CodeUnknownHost:       "use the name of a Service (name, name.namespace or the FQDN) or declare the host with a ServiceEntry",
	CodeWeightSum:         "make the weights of a route's destinations add up to 100 (an unset weight is 0)",
	CodeRuleWithoutTarget: "point spec.host at an existing Service or ServiceEntry host, or delete the DestinationRule",
}

func init() {
	register(Check{Name: "unreachable-match", Codes: []string{CodeUnreachableMatch}, Run: checkUnreachableMatch})
	register(Check{Name: "conflicting-virtualservices", Codes: []string{CodeConflictingVS}, Run: checkConflictingVS})
	// The loader's coded errors, listed so the golden-case test covers them too.
	register(Check{Name: "traffic-references", Codes: []string{CodeUnknownSubset, CodeUnknownHost, CodeWeightSum, CodeRuleWithoutTarget},
		Run: func(*model.Mesh) []Finding { return nil }})
}

// checkUnreachableMatch: routes are tried in order and the first match wins, so every
// rule after one that matches all requests is dead. A rule matches everything when it
// has no match, or a match with no condition but `uri: {prefix: /}`.
func checkUnreachableMatch(m *model.Mesh) []Finding {
	var out []Finding
	for _, vs := range m.VirtualServices {
		for i, rule := range vs.HTTP {
			if !catchAll(rule.Matches) || i == len(vs.HTTP)-1 {
				continue
			}
			dead := make([]string, 0, len(vs.HTTP)-i-1)
			for j := i + 1; j < len(vs.HTTP); j++ {
				dead = append(dead, ruleName(vs.HTTP[j], j))
			}
			out = append(out, finding(CodeUnreachableMatch, Warning, "VirtualService", vs.NamespacedName, vs.Source,
				"move the catch-all rule last, or give it a match",
				"spec.http[%d] (%s) matches every request, so %s after it never match",
				i, ruleName(rule, i), strings.Join(dead, ", ")))
			break
		}
	}
	return out
}

func ruleName(r model.HTTPRoute, i int) string {
	if r.Name != "" {
		return fmt.Sprintf("%q", r.Name)
	}
	return fmt.Sprintf("spec.http[%d]", i)
}

// catchAll reports whether any of the matches (none: match all) holds for every request.
func catchAll(ms []model.HTTPMatch) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		m.Name = ""
		if m.URI != nil && m.URI.Kind == model.MatchPrefix && m.URI.Value == "/" {
			m.URI = nil
		}
		// Any field set (present or future) is a condition.
		if reflect.ValueOf(m).IsZero() {
			return true
		}
	}
	return false
}

// checkConflictingVS: a sidecar uses one VirtualService per host (the first by source
// order, as Istio takes the oldest); the rules of a later one for the same host are
// ignored for it.
func checkConflictingVS(m *model.Mesh) []Finding {
	var out []Finding
	first := map[string]*model.VirtualService{}
	for _, vs := range m.VirtualServices {
		if !meshVS(vs) {
			continue
		}
		for _, h := range vs.Hosts {
			prev, dup := first[h]
			if !dup {
				first[h] = vs
				continue
			}
			out = append(out, finding(CodeConflictingVS, Warning, "VirtualService", vs.NamespacedName, vs.Source,
				"merge the rules into one VirtualService per host",
				"host %s is also routed by VirtualService %s/%s (%s), which wins: this one's routes for it are ignored",
				h, prev.Namespace, prev.Name, prev.Source))
		}
	}
	return out
}

func meshVS(vs *model.VirtualService) bool {
	if len(vs.Gateways) == 0 {
		return true
	}
	for _, g := range vs.Gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}
