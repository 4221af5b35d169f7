package gatewayapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/model"
)

func TestIntersect(t *testing.T) {
	cases := []struct {
		name     string
		listener []string
		route    []gwv1.Hostname
		want     []string
		ok       bool
	}{
		{"neither", nil, nil, []string{"*"}, true},
		{"listener only", []string{"*.example.com"}, nil, []string{"*.example.com"}, true},
		{"route only", nil, []gwv1.Hostname{"a.example.com"}, []string{"a.example.com"}, true},
		{"route narrower", []string{"*.example.com"}, []gwv1.Hostname{"a.example.com", "b.other.com"}, []string{"a.example.com"}, true},
		{"route wildcard wider", []string{"a.example.com"}, []gwv1.Hostname{"*.example.com"}, []string{"a.example.com"}, true},
		{"wildcard both", []string{"*.example.com"}, []gwv1.Hostname{"*.a.example.com"}, []string{"*.a.example.com"}, true},
		{"wildcard does not match its bare domain", []string{"*.example.com"}, []gwv1.Hostname{"example.com"}, nil, false},
		{"none", []string{"a.example.com"}, []gwv1.Hostname{"b.example.com"}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := intersect(c.listener, c.route)
			if ok != c.ok || !cmp.Equal(got, c.want) {
				t.Errorf("intersect(%v, %v) = %v, %v; want %v, %v", c.listener, c.route, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestPrecedence orders matches as the HTTPRoute spec says: exact path, longest
// prefix, method, most headers, most query parameters, then age and name.
func TestPrecedence(t *testing.T) {
	ptr := func(s string) *string { return &s }
	pt := func(t gwv1.PathMatchType) *gwv1.PathMatchType { return &t }
	get := gwv1.HTTPMethod("GET")
	mk := func(name string, m gwv1.HTTPRouteMatch) *attachedRule {
		_, _, key := httpMatch(m)
		return &attachedRule{meta: &Meta{Namespace: "ns", Name: name}, key: key, route: model.GatewayRoute{HTTPRoute: model.HTTPRoute{Name: name}}}
	}
	rules := []*attachedRule{
		mk("q", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/a")}, QueryParams: []gwv1.HTTPQueryParamMatch{{Name: "x", Value: "1"}}}),
		mk("prefix-short", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/a")}}),
		mk("headers", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/a")}, Headers: []gwv1.HTTPHeaderMatch{{Name: "h", Value: "v"}}}),
		mk("method", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/a")}, Method: &get}),
		mk("prefix-long", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/a/b")}}),
		mk("exact", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: pt(gwv1.PathMatchExact), Value: ptr("/a")}}),
		mk("b-tie", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/")}}),
		mk("a-tie", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Value: ptr("/")}}),
	}
	vhs := buildVirtualHosts(append([]*attachedRule(nil), rules...))
	var got []string
	for _, r := range vhs[0].Routes {
		got = append(got, r.Name)
	}
	want := []string{"exact", "prefix-long", "method", "headers", "q", "prefix-short", "a-tie", "b-tie"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// TestReplacePrefixMatch checks the spec's table for the two halves of a PathPrefix.
func TestReplacePrefixMatch(t *testing.T) {
	for _, c := range []struct{ replace, prefixHalf, exactHalf string }{
		{"/xyz", "/xyz/", "/xyz"},
		{"/xyz/", "/xyz/", "/xyz"},
		{"", "/", "/"},
		{"/", "/", "/"},
	} {
		if got := prefixReplacement(c.replace); got != c.prefixHalf {
			t.Errorf("prefixReplacement(%q) = %q, want %q", c.replace, got, c.prefixHalf)
		}
		if got := fullReplacement(c.replace); got != c.exactHalf {
			t.Errorf("fullReplacement(%q) = %q, want %q", c.replace, got, c.exactHalf)
		}
	}
}
