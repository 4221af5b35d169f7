package route

import (
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	"skein.dev/skein/internal/proxy/resource"
)

// BenchmarkVirtualHostLookup: the outbound_http_proxy route table of a sidecar that sees
// N services (8 domain forms each, as the translator emits), looked up by Host.
func BenchmarkVirtualHostLookup(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(strconv.Itoa(n)+"_services", func(b *testing.B) {
			var vhs []resource.VirtualHost
			for i := range n {
				name := "svc" + strconv.Itoa(i)
				fq := name + ".default.svc.cluster.local"
				vhs = append(vhs, resource.VirtualHost{Name: fq + ":8080",
					Domains: []string{fq, fq + ":8080", name, name + ":8080", name + ".default", name + ".default:8080", name + ".default.svc", name + ".default.svc:8080"},
					Routes:  []resource.Route{{Name: "default", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true}, Clusters: []resource.WeightedCluster{{Name: fq, Weight: 1}}}}})
			}
			tbl := New(&resource.RouteConfig{VirtualHosts: vhs})
			host := "svc" + strconv.Itoa(n/2) + ":8080"
			b.ReportAllocs()
			for b.Loop() {
				if tbl.VirtualHost(host) == nil {
					b.Fatal("no virtual host")
				}
			}
		})
	}
}

// BenchmarkHeaderMatch: one route with the header conditions Istio users write most
// (exact, prefix, regex, case-insensitive suffix, presence).
func BenchmarkHeaderMatch(b *testing.B) {
	hm := []resource.HeaderMatcher{
		{Name: "X-Canary", Kind: resource.StringExact, Value: "true"},
		{Name: "User-Agent", Kind: resource.StringSuffix, Value: "bot", IgnoreCase: true},
		{Name: "X-Tenant", Kind: resource.StringPrefix, Value: "acme-"},
		{Name: "X-Version", Kind: resource.StringRegex, Regex: regexp.MustCompile(`^(?:v[0-9]+)$`)},
		{Name: "X-Debug", Present: true},
	}
	tbl := New(&resource.RouteConfig{VirtualHosts: []resource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []resource.Route{
		{Name: "r", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true, Headers: hm}, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}}},
	}}}})
	req := httptest.NewRequest("GET", "http://catalog:8080/items", nil)
	req.Header.Set("X-Canary", "true")
	req.Header.Set("User-Agent", "GoogleBOT")
	req.Header.Set("X-Tenant", "acme-eu")
	req.Header.Set("X-Version", "v2")
	req.Header.Set("X-Debug", "1")
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Match(req) == nil {
			b.Fatal("no match")
		}
	}
}
