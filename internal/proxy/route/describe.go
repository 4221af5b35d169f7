package route

import (
	"fmt"
	"strings"

	"skein.dev/skein/internal/proxy/resource"
)

// describeMatch renders a route match as Envoy's config would read: the path
// condition, then each header condition.
func describeMatch(m resource.RouteMatch) string {
	var parts []string
	switch m.Kind {
	case resource.PathPrefix:
		parts = append(parts, fmt.Sprintf("prefix %q", m.Path))
	case resource.PathExact:
		parts = append(parts, fmt.Sprintf("path %q", m.Path))
	case resource.PathRegex:
		parts = append(parts, fmt.Sprintf("regex %s", strings.TrimSuffix(strings.TrimPrefix(m.Regex.String(), "^(?:"), ")$")))
	}
	if !m.CaseSensitive {
		parts[0] += " (case-insensitive)"
	}
	for i := range m.Headers {
		parts = append(parts, "header "+m.Headers[i].Name+" "+describeHeader(&m.Headers[i]))
	}
	for _, q := range m.Query {
		if q.Present {
			parts = append(parts, "query "+q.Name+" present")
			continue
		}
		h := resource.HeaderMatcher{Kind: q.Match.Kind, Value: q.Match.Value, Regex: q.Match.Regex, IgnoreCase: q.Match.IgnoreCase}
		parts = append(parts, "query "+q.Name+" "+describeHeader(&h))
	}
	return strings.Join(parts, ", ")
}

func describeHeader(h *resource.HeaderMatcher) string {
	var s string
	if h.Present {
		s = "present"
	} else {
		ops := map[resource.StringKind]string{
			resource.StringExact: "exact", resource.StringPrefix: "prefix", resource.StringSuffix: "suffix",
			resource.StringContains: "contains", resource.StringRegex: "regex",
		}
		v := fmt.Sprintf("%q", h.Value)
		if h.Kind == resource.StringRegex {
			v = h.Regex.String()
		}
		s = ops[h.Kind] + " " + v
		if h.IgnoreCase {
			s += " (ignore case)"
		}
	}
	if h.Invert {
		s = "not " + s
	}
	return s
}
