package security

import (
	"net/http/httptest"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/filter/rbac"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/xds/translate"
)

// FuzzPolicyConversion runs arbitrary AuthorizationPolicy / RequestAuthentication YAML
// through the whole conversion: loader (must not panic; errors are fine), translator
// (must not fail on anything the loader accepted), the proxy's decoder (must accept
// everything the translator emits) and one evaluation.
func FuzzPolicyConversion(f *testing.F) {
	f.Add("spec: {}")
	f.Add("spec:\n  action: DENY\n  rules: [{to: [{operation: {methods: [POST], ports: [\"8080\"]}}]}]")
	f.Add("spec:\n  rules: [{from: [{source: {principals: [\"*\"], notIpBlocks: [10.0.0.0/8]}}], when: [{key: \"request.auth.claims[a][b]\", values: [x]}]}]")
	f.Add("spec:\n  action: AUDIT\n  rules: [{from: [{source: {requestPrincipals: [\"*/sub\", \"iss/*\"], remoteIpBlocks: [\"::1\"]}}]}]")
	f.Add("spec:\n  rules: [{to: [{operation: {paths: [\"*.png\", \"/a/*\"], hosts: [\"*\"]}}], when: [{key: connection.sni, notValues: [\"a*\"]}]}]")
	node := &model.Proxy{ID: "httpbin-0.foo", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "foo", Name: "httpbin"},
		Labels: map[string]string{"app": "httpbin"}, Capture: model.CaptureNone, IP: "127.0.0.1", InboundPorts: map[int]int{8080: 18080, 9000: 19000}}
	f.Fuzz(func(t *testing.T, spec string) {
		doc := baseConfig + "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: fuzz, namespace: foo}\n" + spec + "\n"
		mesh, err := config.LoadBytes("fuzz.yaml", []byte(doc))
		if err != nil {
			return
		}
		res, err := translate.ForProxy(mesh, node)
		if err != nil {
			t.Fatalf("translating an accepted policy: %v\n%s", err, spec)
		}
		for _, r := range res.Listeners {
			a, _ := anypb.New(r.(*listenerv3.Listener))
			l, err := resource.NewDecoder().Listener(a)
			if err != nil {
				t.Fatalf("the proxy rejects the translation of an accepted policy: %v\n%s", err, spec)
			}
			for _, c := range l.Resource.Chains() {
				if c.HTTP == nil {
					continue
				}
				for _, hf := range c.HTTP.Filters {
					if hf.RBAC == nil {
						continue
					}
					r := httptest.NewRequest("GET", "http://h/a.png", nil)
					req := &filter.Request{HTTP: r, Conn: filter.ConnOfRequest(r), Metadata: filter.Metadata{}}
					_ = rbac.NewHTTPFilter(hf.RBAC, "l", logger(), nil).DecodeHTTP(req)
				}
			}
		}
	})
}
