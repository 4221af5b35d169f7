package istio

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/model"
)

// FuzzVirtualService feeds VirtualService specs (protojson) to the adapter, the
// reference checks and delegate merging: none may panic, and a spec the adapter accepts
// must give a model the translator can rely on.
func FuzzVirtualService(f *testing.F) {
	for _, seed := range []string{
		`{"hosts":["web"],"http":[{"route":[{"destination":{"host":"web"}}]}]}`,
		`{"hosts":["web"],"http":[{"match":[{"uri":{"prefix":"/a"},"method":{"exact":"POST"},"headers":{"x":{}},"withoutHeaders":{"y":{"regex":"a+"}},"queryParams":{"q":{"exact":"1"}},"ignoreUriCase":true,"sourceLabels":{"app":"c"},"sourceNamespace":"n"}],"route":[{"destination":{"host":"web","subset":"v1"},"weight":60,"headers":{"request":{"set":{"a":"b"}}}},{"destination":{"host":"web","subset":"v2"},"weight":40}]}]}`,
		`{"hosts":["web"],"http":[{"redirect":{"uri":"/n","authority":"a","port":8443,"scheme":"https","redirectCode":308}}]}`,
		`{"hosts":["web"],"http":[{"rewrite":{"uriRegexRewrite":{"match":"^/a/(.*)$","rewrite":"/\\1"},"authority":"x"},"route":[{"destination":{"host":"web"}}]}]}`,
		`{"hosts":["web"],"http":[{"retries":{"attempts":3,"perTryTimeout":"1s","retryOn":"5xx,503,unavailable"},"timeout":"2s","route":[{"destination":{"host":"web"}}]}]}`,
		`{"hosts":["web"],"http":[{"fault":{"delay":{"fixedDelay":"1s","percentage":{"value":50}},"abort":{"grpcStatus":"UNAVAILABLE"}},"mirror":{"host":"shadow"},"mirrorPercentage":{"value":10},"route":[{"destination":{"host":"web"}}]}]}`,
		`{"hosts":["web"],"http":[{"mirrors":[{"destination":{"host":"a"},"percentage":{"value":1}}],"corsPolicy":{"allowOrigins":[{"regex":".*"}],"allowMethods":["GET"],"maxAge":"10s","allowCredentials":true},"route":[{"destination":{"host":"web"}}]}]}`,
		`{"hosts":["web"],"http":[{"match":[{"uri":{"prefix":"/t"}}],"delegate":{"name":"leaf"}}]}`,
		`{"http":[{"match":[{"uri":{"prefix":"/t/x"}}],"route":[{"destination":{"host":"web"}}]}]}`,
	} {
		f.Add([]byte(seed), []byte(`{"http":[{"route":[{"destination":{"host":"web"}}]}]}`))
	}
	f.Fuzz(func(t *testing.T, rootJSON, leafJSON []byte) {
		var root, leaf networking.VirtualService
		if protojson.Unmarshal(rootJSON, &root) != nil || protojson.Unmarshal(leafJSON, &leaf) != nil {
			return
		}
		nn := model.NamespacedName{Namespace: "default", Name: "root"}
		vs, issues := VirtualService(nn, &root, model.DefaultDomainSuffix)
		issues = append(issues, ApplyRetryBudget(vs, map[string]string{AnnotationBudgetRatio: "0.5"})...)
		lvs, lissues := VirtualService(model.NamespacedName{Namespace: "default", Name: "leaf"}, &leaf, model.DefaultDomainSuffix)
		cat := &Catalog{Suffix: model.DefaultDomainSuffix, Services: map[string]*model.Service{}, Subsets: map[string][]string{}}
		cat.AddVirtualService("default", "leaf", lvs)
		_ = VirtualServiceReferences("default", &root, cat)
		if len(issues) > 0 || len(lissues) > 0 {
			return
		}
		for _, r := range vs.HTTP {
			forwards := len(r.Destinations) > 0
			if forwards == (r.Redirect != nil) && r.Delegate == nil {
				t.Fatalf("accepted rule %+v must either forward or redirect", r)
			}
			if f := r.Fault; f != nil {
				if f.Delay != nil && (f.Delay.Percent < 0 || f.Delay.Percent > 100) || f.Abort != nil && (f.Abort.Percent < 0 || f.Abort.Percent > 100) {
					t.Fatalf("accepted fault percentage out of range: %+v", f)
				}
			}
			if r.Retries != nil && r.Retries.Attempts < 0 {
				t.Fatalf("accepted negative attempts: %+v", r.Retries)
			}
		}
		_ = model.ResolveDelegates([]*model.VirtualService{vs, lvs})
	})
}
