package route

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"skein.dev/skein/internal/proxy/resource"
)

func table() *Table {
	r := func(name string) []resource.Route {
		return []resource.Route{{Name: name, Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true}, Clusters: []resource.WeightedCluster{{Name: name, Weight: 1}}}}
	}
	return New(&resource.RouteConfig{Name: "t", VirtualHosts: []resource.VirtualHost{
		{Name: "exact", Domains: []string{"api.example.com", "api.example.com:8080"}, Routes: r("exact")},
		{Name: "suffix-long", Domains: []string{"*.api.example.com"}, Routes: r("suffix-long")},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: r("suffix")},
		{Name: "prefix", Domains: []string{"api.*"}, Routes: r("prefix")},
		{Name: "any", Domains: []string{"*"}, Routes: r("any")},
	}})
}

func TestVirtualHostDomains(t *testing.T) {
	tbl := table()
	tests := []struct{ host, want string }{
		{"api.example.com", "exact"},
		{"API.Example.com", "exact"},
		{"api.example.com:8080", "exact"},
		{"api.example.com:9999", "prefix"},         // the host with its port is tried first
		{"v1.api.example.com:9999", "suffix-long"}, // then without the port
		{"v1.api.example.com", "suffix-long"},
		{"www.example.com", "suffix"},
		{"example.com", "any"}, // "*.example.com" needs at least one character
		{"api.other.org", "prefix"},
		{"nothing", "any"},
	}
	for _, tc := range tests {
		if got := tbl.VirtualHost(tc.host); got == nil || got.Name != tc.want {
			t.Errorf("VirtualHost(%q) = %v, want %s", tc.host, got, tc.want)
		}
	}
}

func TestRouteMatch(t *testing.T) {
	rt := func(name string, m resource.RouteMatch) resource.Route {
		return resource.Route{Name: name, Match: m, Clusters: []resource.WeightedCluster{{Name: name, Weight: 1}}}
	}
	tbl := New(&resource.RouteConfig{VirtualHosts: []resource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []resource.Route{
		rt("exact", resource.RouteMatch{Kind: resource.PathExact, Path: "/a", CaseSensitive: true}),
		rt("nocase", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/case", CaseSensitive: false}),
		rt("regex", resource.RouteMatch{Kind: resource.PathRegex, Regex: regexp.MustCompile(`^(?:/r/\d+)$`), CaseSensitive: true}),
		rt("present", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/h", CaseSensitive: true, Headers: []resource.HeaderMatcher{{Name: "X-Debug", Present: true}}}),
		rt("absent-inverted", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/h", CaseSensitive: true, Headers: []resource.HeaderMatcher{{Name: "X-Debug", Kind: resource.StringExact, Value: "no", Invert: true}}}),
		rt("suffix-ic", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/s", CaseSensitive: true, Headers: []resource.HeaderMatcher{{Name: "User-Agent", Kind: resource.StringSuffix, Value: "bot", IgnoreCase: true}}}),
	}}}})
	tests := []struct {
		path   string
		header http.Header
		want   string
	}{
		{"/a", nil, "exact"},
		{"/a/", nil, ""},
		{"/CASE/x", nil, "nocase"},
		{"/r/12", nil, "regex"},
		{"/r/12?q=1", nil, "regex"}, // the query is not part of the path
		{"/r/12a", nil, ""},
		{"/h", http.Header{"X-Debug": {"1"}}, "present"},
		{"/h", nil, ""}, // a missing header fails even an inverted string match, as Envoy
		{"/s", http.Header{"User-Agent": {"GoogleBOT"}}, "suffix-ic"},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", "http://x"+tc.path, nil)
		req.Header = tc.header
		if req.Header == nil {
			req.Header = http.Header{}
		}
		got := ""
		if r := tbl.Match(req); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("Match(%s %v) = %q, want %q", tc.path, tc.header, got, tc.want)
		}
	}
}

func TestPickWeighted(t *testing.T) {
	cs := []resource.WeightedCluster{{Name: "a", Weight: 90}, {Name: "b", Weight: 10}, {Name: "c", Weight: 0}}
	cumul, total := Cumulative(cs)
	counts := map[string]int{}
	for range 10000 {
		counts[PickWeighted(cs, cumul, total)]++
	}
	if counts["c"] != 0 || counts["a"] < 8800 || counts["a"] > 9200 {
		t.Fatalf("counts %v, want a≈9000, b≈1000, c=0", counts)
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	var routes []resource.Route
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"} {
		routes = append(routes, resource.Route{Name: p, Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: p, CaseSensitive: true,
			Headers: []resource.HeaderMatcher{{Name: "X-Version", Kind: resource.StringExact, Value: "v2"}}}, Clusters: []resource.WeightedCluster{{Name: p, Weight: 1}}})
	}
	routes = append(routes, resource.Route{Name: "default", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true},
		Clusters: []resource.WeightedCluster{{Name: "x", Weight: 90}, {Name: "y", Weight: 10}}})
	var vhs []resource.VirtualHost
	for _, d := range []string{"a", "b", "c", "catalog", "d", "e"} {
		vhs = append(vhs, resource.VirtualHost{Name: d, Domains: []string{d, d + ":8080", d + ".default.svc.cluster.local"}, Routes: routes})
	}
	tbl := New(&resource.RouteConfig{VirtualHosts: vhs})
	req := httptest.NewRequest("GET", "http://catalog:8080/zzz", nil)
	b.ReportAllocs()
	for b.Loop() {
		r := tbl.Match(req)
		if r == nil || r.PickCluster() == "" {
			b.Fatal("no match")
		}
	}
}
