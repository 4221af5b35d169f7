package rbac

import (
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
)

// benchPolicies is the RBAC the translator (internal/xds/translate/rbac.go, Istio's
// shape) makes of a realistic policy set for one workload:
//
//	DENY  deny-admin:   to paths ["/admin/*", "*/debug"] unless from namespace "ops"
//	ALLOW frontend:     from principal cluster.local/ns/shop/sa/frontend,
//	                    to methods [GET, HEAD] paths ["/api/*", "/items/*"]
//	ALLOW reports:      from principals ["*/ns/finance/sa/*"], to paths ["/reports/*"],
//	                    when request.auth.claims[groups] = "analysts"
//	ALLOW ops:          from namespace "ops", to ports [8080, 9090]
//	ALLOW internal-ip:  when source.ip 10.0.0.0/8 and request.headers[x-api-key] present,
//	                    to methods [POST] paths ["/ingest"]
//
// A sidecar runs the DENY filter, then the ALLOW filter, per request.
func benchPolicies() (deny, allow *resource.RBAC) {
	s := func(kind resource.StringKind, v string) *resource.StringMatcher { return str(kind, v) }
	header := func(name string, kind resource.StringKind, v string) *resource.HeaderMatcher {
		return &resource.HeaderMatcher{Name: name, Kind: kind, Value: v}
	}
	perm := func(rules ...resource.Permission) resource.Permission {
		return resource.Permission{Kind: resource.RuleAnd, Rules: rules}
	}
	or := func(rules ...resource.Permission) resource.Permission {
		return resource.Permission{Kind: resource.RuleOr, Rules: rules}
	}
	path := func(kind resource.StringKind, v string) resource.Permission {
		return resource.Permission{Kind: resource.RulePath, String: s(kind, v)}
	}
	method := func(m string) resource.Permission {
		return resource.Permission{Kind: resource.RuleHeader, Header: header(":method", resource.StringExact, m)}
	}
	port := func(p uint32) resource.Permission {
		return resource.Permission{Kind: resource.RuleDestinationPort, Port: p}
	}
	principals := func(ids ...resource.Principal) resource.Principal {
		return resource.Principal{Kind: resource.RuleAnd, IDs: []resource.Principal{{Kind: resource.RuleOr, IDs: ids}}}
	}
	spiffe := func(kind resource.StringKind, v string) resource.Principal {
		return resource.Principal{Kind: resource.RuleAuthenticated, String: s(kind, v)}
	}
	opsNS := spiffe(resource.StringRegex, `spiffe://.*/ns/ops/.*`)

	deny = &resource.RBAC{Action: resource.RBACDeny, Policies: []resource.RBACPolicy{{
		Name:        "ns[shop]-policy[deny-admin]-rule[0]",
		Permissions: []resource.Permission{perm(or(path(resource.StringPrefix, "/admin/"), path(resource.StringSuffix, "/debug")))},
		Principals: []resource.Principal{{Kind: resource.RuleAnd, IDs: []resource.Principal{
			{Kind: resource.RuleNot, Not: &resource.Principal{Kind: resource.RuleOr, IDs: []resource.Principal{opsNS}}},
		}}},
	}}}
	groups := &resource.MetadataMatcher{Filter: "envoy.filters.http.jwt_authn", Path: []string{"payload", "groups"},
		Value: resource.ValueMatcher{Kind: resource.ValueOr, Or: []resource.ValueMatcher{
			{Kind: resource.ValueString, String: s(resource.StringExact, "analysts")},
			{Kind: resource.ValueListOneOf, OneOf: &resource.ValueMatcher{Kind: resource.ValueString, String: s(resource.StringExact, "analysts")}},
		}}}
	allow = &resource.RBAC{Action: resource.RBACAllow, Policies: []resource.RBACPolicy{
		{
			Name: "ns[shop]-policy[frontend]-rule[0]",
			Permissions: []resource.Permission{perm(or(method("GET"), method("HEAD")),
				or(path(resource.StringPrefix, "/api/"), path(resource.StringPrefix, "/items/")))},
			Principals: []resource.Principal{principals(spiffe(resource.StringExact, "spiffe://cluster.local/ns/shop/sa/frontend"))},
		},
		{
			Name:        "ns[shop]-policy[internal-ip]-rule[0]",
			Permissions: []resource.Permission{perm(or(method("POST")), or(path(resource.StringExact, "/ingest")))},
			Principals: []resource.Principal{{Kind: resource.RuleAnd, IDs: []resource.Principal{
				{Kind: resource.RuleOr, IDs: []resource.Principal{{Kind: resource.RuleDirectRemoteIP, CIDR: netip.MustParsePrefix("10.0.0.0/8")}}},
				{Kind: resource.RuleHeader, Header: &resource.HeaderMatcher{Name: "X-Api-Key", Present: true}},
			}}},
		},
		{
			Name:        "ns[shop]-policy[ops]-rule[0]",
			Permissions: []resource.Permission{perm(or(port(8080), port(9090)))},
			Principals:  []resource.Principal{principals(opsNS)},
		},
		{
			Name: "ns[shop]-policy[reports]-rule[0]",
			Permissions: []resource.Permission{perm(or(path(resource.StringPrefix, "/reports/")),
				resource.Permission{Kind: resource.RuleMetadata, Metadata: groups})},
			Principals: []resource.Principal{principals(spiffe(resource.StringRegex, `spiffe://.*/ns/finance/sa/.*`))},
		},
	}}
	return deny, allow
}

// benchRequest is one request of the mix and the verdict the policies give it.
type benchRequest struct {
	method, target, principal, source string
	claims                            []any
	apiKey                            bool
	allowed                           bool
}

var benchRequests = []benchRequest{
	{method: "GET", target: "/api/items?page=2", principal: "spiffe://cluster.local/ns/shop/sa/frontend", source: "10.1.2.3:40000", allowed: true},
	{method: "GET", target: "/items/42", principal: "spiffe://cluster.local/ns/shop/sa/frontend", source: "10.1.2.3:40000", allowed: true},
	{method: "DELETE", target: "/items/42", principal: "spiffe://cluster.local/ns/shop/sa/frontend", source: "10.1.2.3:40000"},
	{method: "GET", target: "/admin/users", principal: "spiffe://cluster.local/ns/shop/sa/frontend", source: "10.1.2.3:40000"},
	{method: "GET", target: "/admin/users", principal: "spiffe://cluster.local/ns/ops/sa/oncall", source: "10.9.9.9:40000", allowed: true},
	{method: "GET", target: "/api/./x/../debug", principal: "spiffe://cluster.local/ns/ops/sa/oncall", source: "10.9.9.9:40000", allowed: true},
	{method: "GET", target: "/reports/q3", principal: "spiffe://cluster.local/ns/finance/sa/bi", source: "10.4.4.4:40000", claims: []any{"staff", "analysts"}, allowed: true},
	{method: "GET", target: "/reports/q3", principal: "spiffe://cluster.local/ns/finance/sa/bi", source: "10.4.4.4:40000", claims: []any{"staff"}},
	{method: "POST", target: "/ingest", principal: "", source: "10.7.0.1:40000", apiKey: true, allowed: true},
	{method: "POST", target: "/ingest", principal: "", source: "192.0.2.1:40000", apiKey: true},
}

func (br benchRequest) request() *filter.Request {
	r := httptest.NewRequest(br.method, "http://catalog.shop:8080"+br.target, nil)
	if br.apiKey {
		r.Header.Set("X-Api-Key", "k")
	}
	req := &filter.Request{HTTP: r, Listener: "inbound|8080", Metadata: filter.Metadata{}, Conn: filter.Conn{
		Source: netip.MustParseAddrPort(br.source), Destination: netip.MustParseAddrPort("10.0.0.5:8080"),
		Authenticated: br.principal != "", Principal: br.principal,
	}}
	if br.claims != nil {
		req.Metadata.Set("envoy.filters.http.jwt_authn", "payload", map[string]any{"groups": br.claims, "sub": "u"})
	}
	return req
}

// TestBenchPolicies: the benchmark's request mix gets the verdicts Istio gives it, so
// the benchmark measures real decisions.
func TestBenchPolicies(t *testing.T) {
	d, a := benchPolicies()
	log := slog.New(slog.DiscardHandler)
	deny, allow := NewHTTPFilter(d, "inbound|8080", log, nil), NewHTTPFilter(a, "inbound|8080", log, nil)
	for _, br := range benchRequests {
		r := br.request()
		got := deny.DecodeHTTP(r) == nil && allow.DecodeHTTP(r) == nil
		if got != br.allowed {
			t.Errorf("%s %s from %q (%s): allowed %v, want %v", br.method, br.target, br.principal, br.source, got, br.allowed)
		}
	}
}

// BenchmarkAuthorize is a sidecar's authorization per request: the DENY then the
// ALLOW RBAC filter of benchPolicies, over a mix of allowed and denied requests,
// with the decision metrics recorded as on the request path. allocs/op are per
// request (both filters).
func BenchmarkAuthorize(b *testing.B) {
	d, a := benchPolicies()
	log := slog.New(slog.DiscardHandler)
	metrics := stats.NewRBAC(prometheus.NewRegistry())
	deny, allow := NewHTTPFilter(d, "inbound|8080", log, metrics), NewHTTPFilter(a, "inbound|8080", log, metrics)
	reqs := make([]*filter.Request, len(benchRequests))
	for i, br := range benchRequests {
		reqs[i] = br.request()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		if deny.DecodeHTTP(r) == nil {
			allow.DecodeHTTP(r)
		}
		i++
	}
}
