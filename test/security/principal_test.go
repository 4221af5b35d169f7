package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/filter/rbac"
	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/xds/translate"
)

// inboundFilters translates policies for the httpbin sidecar and compiles the RBAC
// filters of its inbound HTTP listener with the proxy's own decoder.
func inboundFilters(t *testing.T, policies string) []filter.HTTP {
	t.Helper()
	mesh, err := load(t, policies)
	if err != nil {
		t.Fatal(err)
	}
	node := &model.Proxy{ID: "httpbin-0.foo", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "foo", Name: "httpbin"},
		Labels: map[string]string{"app": "httpbin"}, Capture: model.CaptureNone, IP: "127.0.0.1", InboundPorts: map[int]int{8080: 18080, 9000: 19000}}
	res, err := translate.ForProxy(mesh, node)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Listeners {
		l := r.(*listenerv3.Listener)
		if l.GetName() != translate.InboundListenerName(8080) {
			continue
		}
		a, _ := anypb.New(l)
		dec, err := resource.NewDecoder().Listener(a)
		if err != nil {
			t.Fatal(err)
		}
		var out []filter.HTTP
		for _, f := range dec.Resource.Chains()[0].HTTP.Filters {
			if f.RBAC != nil {
				out = append(out, rbac.NewHTTPFilter(f.RBAC, l.GetName(), logger(), nil))
			}
		}
		return out
	}
	t.Fatal("no inbound listener")
	return nil
}

// TestPrincipalsWithInjectedPeerIdentity covers the mTLS-based source fields with the
// peer identity set through the accessor (package peer) the mTLS layer fills in, and
// through a TLS connection state with a verified certificate, as the proxy's TLS
// listener will provide.
func TestPrincipalsWithInjectedPeerIdentity(t *testing.T) {
	const sleep = "spiffe://cluster.local/ns/default/sa/sleep"
	const other = "spiffe://other.domain/ns/bar/sa/client"
	tests := []struct {
		name, policies string
		principal      string // "" means plaintext
		viaTLS         bool
		want           bool
	}{
		{"principals match", allowPolicy("p", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]"), sleep, false, true},
		{"principals other", allowPolicy("p", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]"), other, false, false},
		{"principals via TLS state", allowPolicy("p", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]"), sleep, true, true},
		{"principals prefix wildcard", allowPolicy("p", "  rules: [{from: [{source: {principals: [\"cluster.local/*\"]}}]}]"), sleep, false, true},
		{"principals suffix wildcard", allowPolicy("p", "  rules: [{from: [{source: {principals: [\"*/sa/client\"]}}]}]"), other, false, true},
		{"principals any authenticated", allowPolicy("p", "  rules: [{from: [{source: {principals: [\"*\"]}}]}]"), other, false, true},
		{"principals any: plaintext denied", allowPolicy("p", "  rules: [{from: [{source: {principals: [\"*\"]}}]}]"), "", false, false},
		{"notPrincipals", allowPolicy("p", "  rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]}]"), sleep, false, false},
		{"notPrincipals other allowed", allowPolicy("p", "  rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]}]"), other, false, true},
		{"namespaces", allowPolicy("p", "  rules: [{from: [{source: {namespaces: [default]}}]}]"), sleep, false, true},
		{"namespaces other", allowPolicy("p", "  rules: [{from: [{source: {namespaces: [default]}}]}]"), other, false, false},
		{"notNamespaces", allowPolicy("p", "  rules: [{from: [{source: {notNamespaces: [default]}}]}]"), sleep, false, false},
		{"serviceAccounts", allowPolicy("p", "  rules: [{from: [{source: {serviceAccounts: [default/sleep]}}]}]"), sleep, false, true},
		{"serviceAccounts bare name is the policy namespace", allowPolicy("p", "  rules: [{from: [{source: {serviceAccounts: [sleep]}}]}]"), sleep, false, false},
		{"when source.principal", allowPolicy("p", "  rules: [{when: [{key: source.principal, values: [other.domain/ns/bar/sa/client]}]}]"), other, false, true},
		{"when source.namespace", allowPolicy("p", "  rules: [{when: [{key: source.namespace, values: [bar]}]}]"), other, false, true},
		{"deny principals", allowPolicy("p", "  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]"), sleep, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filters := inboundFilters(t, tt.policies)
			r := httptest.NewRequest("GET", "http://httpbin/", nil)
			switch {
			case tt.principal != "" && tt.viaTLS:
				u, _ := url.Parse(tt.principal)
				cert := &x509.Certificate{URIs: []*url.URL{u}}
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
			case tt.principal != "":
				r = r.WithContext(peer.NewContext(context.Background(), &peer.Info{TLS: true, ID: spiffeid.RequireFromString(tt.principal)}))
			}
			req := &filter.Request{HTTP: r, Conn: filter.ConnOfRequest(r), Metadata: filter.Metadata{}}
			allowed := true
			for _, f := range filters {
				if reply := f.DecodeHTTP(req); reply != nil {
					allowed = false
					if reply.Status != 403 || reply.Body != rbac.DeniedBody {
						t.Errorf("reply = %d %q, want 403 %q", reply.Status, reply.Body, rbac.DeniedBody)
					}
					break
				}
			}
			if allowed != tt.want {
				t.Errorf("allowed = %v, want %v", allowed, tt.want)
			}
		})
	}
}
