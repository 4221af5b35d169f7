package rbac

import (
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"testing"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/resource"
)

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":         "/a/b",
		"/a/./b":       "/a/b",
		"/a/../b":      "/b",
		"/../../x":     "/x",
		"/a/b/..":      "/a/",
		"/a/.":         "/a/",
		"/a%2F../b":    "/a%2F../b", // %2F is not a separator: BASE keeps it
		"/a/b?q=../x":  "/a/b",
		"/file.tar.gz": "/file.tar.gz",
		"/a//b/../c":   "/a//c",
	} {
		r := httptest.NewRequest("GET", "http://h"+in, nil)
		if got := NormalizePath(r); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func str(kind resource.StringKind, v string) *resource.StringMatcher {
	m := &resource.StringMatcher{Kind: kind, Value: v}
	if kind == resource.StringRegex {
		m.Regex = regexp.MustCompile("^(?:" + v + ")$")
	}
	return m
}

func TestMetadataMatch(t *testing.T) {
	md := filter.Metadata{"envoy.filters.http.jwt_authn": {"payload": map[string]any{
		"iss": "i", "groups": []any{"a", "b"}, "nested": map[string]any{"k": "v"}, "admin": true,
	}}}
	one := resource.ValueMatcher{Kind: resource.ValueString, String: str(resource.StringExact, "b")}
	tests := []struct {
		name string
		m    resource.MetadataMatcher
		want bool
	}{
		{"string", resource.MetadataMatcher{Path: []string{"payload", "iss"}, Value: resource.ValueMatcher{Kind: resource.ValueString, String: str(resource.StringExact, "i")}}, true},
		{"list one_of", resource.MetadataMatcher{Path: []string{"payload", "groups"}, Value: resource.ValueMatcher{Kind: resource.ValueListOneOf, OneOf: &one}}, true},
		{"or: string or list", resource.MetadataMatcher{Path: []string{"payload", "groups"}, Value: resource.ValueMatcher{Kind: resource.ValueOr, Or: []resource.ValueMatcher{one, {Kind: resource.ValueListOneOf, OneOf: &one}}}}, true},
		{"nested", resource.MetadataMatcher{Path: []string{"payload", "nested", "k"}, Value: resource.ValueMatcher{Kind: resource.ValueString, String: str(resource.StringPrefix, "v")}}, true},
		{"bool", resource.MetadataMatcher{Path: []string{"payload", "admin"}, Value: resource.ValueMatcher{Kind: resource.ValueBool, Bool: true}}, true},
		{"missing", resource.MetadataMatcher{Path: []string{"payload", "nope"}, Value: resource.ValueMatcher{Kind: resource.ValuePresent}}, false},
		{"missing inverted", resource.MetadataMatcher{Path: []string{"payload", "nope"}, Value: resource.ValueMatcher{Kind: resource.ValuePresent}, Invert: true}, true},
		{"through a string", resource.MetadataMatcher{Path: []string{"payload", "iss", "x"}, Value: resource.ValueMatcher{Kind: resource.ValuePresent}}, false},
	}
	for _, tt := range tests {
		tt.m.Filter = "envoy.filters.http.jwt_authn"
		if got := metadata(&tt.m, md); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestEngineActions(t *testing.T) {
	pol := func(action resource.RBACAction) *resource.RBAC {
		return &resource.RBAC{Action: action, Policies: []resource.RBACPolicy{{
			Name:        "p",
			Permissions: []resource.Permission{{Kind: resource.RuleDestinationPort, Port: 8080}},
			Principals:  []resource.Principal{{Kind: resource.RuleDirectRemoteIP, CIDR: netip.MustParsePrefix("10.0.0.0/8")}},
		}}}
	}
	match := &Input{Conn: &filter.Conn{Source: netip.MustParseAddrPort("10.1.1.1:5"), Destination: netip.MustParseAddrPort("127.0.0.1:8080")}}
	miss := &Input{Conn: &filter.Conn{Source: netip.MustParseAddrPort("192.0.2.1:5"), Destination: netip.MustParseAddrPort("127.0.0.1:8080")}}
	for _, tt := range []struct {
		action      resource.RBACAction
		in          *Input
		allow, logd bool
	}{
		{resource.RBACAllow, match, true, false},
		{resource.RBACAllow, miss, false, false},
		{resource.RBACDeny, match, false, false},
		{resource.RBACDeny, miss, true, false},
		{resource.RBACLog, match, true, true},
		{resource.RBACLog, miss, true, false},
	} {
		allow, logd, _ := New(pol(tt.action)).Allowed(tt.in)
		if allow != tt.allow || logd != tt.logd {
			t.Errorf("%v: allowed %v logged %v, want %v %v", tt.action, allow, logd, tt.allow, tt.logd)
		}
	}
	// An ALLOW filter without policies denies everything (Istio's allow-nothing).
	if allow, _, _ := New(&resource.RBAC{Action: resource.RBACAllow}).Allowed(match); allow {
		t.Error("ALLOW without policies allowed a request")
	}
}

// TestNetworkFilterAuditAndDenial: a TCP connection matched by a LOG (Istio AUDIT)
// filter carries the access log hint and policy in its metadata; a refused one names
// the deciding policy as Envoy's details do; Explain agrees with OnConnection.
func TestNetworkFilterAuditAndDenial(t *testing.T) {
	pol := func(action resource.RBACAction, name string) *resource.RBAC {
		return &resource.RBAC{Action: action, Policies: []resource.RBACPolicy{{
			Name:        name,
			Permissions: []resource.Permission{{Kind: resource.RuleDestinationPort, Port: 9000}},
			Principals:  []resource.Principal{{Kind: resource.RuleAny}},
		}}}
	}
	log := slog.New(slog.DiscardHandler)
	conn := func() *filter.Conn {
		return &filter.Conn{Source: netip.MustParseAddrPort("127.0.0.1:5"), Destination: netip.MustParseAddrPort("127.0.0.1:9000")}
	}

	audit := NewNetworkFilter(pol(resource.RBACLog, "ns[foo]-policy[audit]-rule[0]"), "inbound|9000", log, nil)
	c := conn()
	if !audit.OnConnection(c) {
		t.Fatal("an AUDIT filter refused a connection")
	}
	if got := AuditPolicy(c.Metadata); got != "ns[foo]-policy[audit]-rule[0]" {
		t.Errorf("audit policy in metadata = %q", got)
	}
	if d := audit.Explain(conn()); d.Result != "logged" || d.Policy != "ns[foo]-policy[audit]-rule[0]" {
		t.Errorf("explain of the AUDIT filter: %+v", d)
	}

	deny := NewNetworkFilter(pol(resource.RBACDeny, "ns[foo]-policy[deny-tcp]-rule[0]"), "inbound|9000", log, nil)
	c = conn()
	if deny.OnConnection(c) {
		t.Fatal("a matching DENY filter allowed the connection")
	}
	if AuditPolicy(c.Metadata) != "" {
		t.Errorf("a denied connection was marked audited")
	}
	if got, want := deny.DeniedDetails(c), "rbac_access_denied_matched_policy[ns[foo]-policy[deny-tcp]-rule[0]]"; got != want {
		t.Errorf("details %q, want %q", got, want)
	}
	if d := deny.Explain(conn()); !d.Denied() || d.Action != "DENY" {
		t.Errorf("explain of the DENY filter: %+v", d)
	}
	allow := NewNetworkFilter(&resource.RBAC{Action: resource.RBACAllow}, "inbound|9000", log, nil)
	if got := allow.DeniedDetails(conn()); got != "rbac_access_denied_matched_policy[none]" {
		t.Errorf("allow-nothing details %q", got)
	}
}
