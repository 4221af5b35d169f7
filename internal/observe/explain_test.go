package observe

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/forward"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/xdsclient"
	"skein.dev/skein/internal/xds/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// demoMesh is the built-in demo with the explain tests' authorization policies:
// catalog-v2-1 is down and inventory has no healthy replica.
func demoMesh(t *testing.T) *model.Mesh {
	t.Helper()
	mesh, err := config.Load(filepath.Join("..", "..", "examples", "demo"), filepath.Join("testdata", "explain", "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ep := func(name, version string, replica, port int, healthy bool) model.Endpoint {
		return model.Endpoint{Workload: model.NamespacedName{Namespace: "default", Name: name}, Replica: replica,
			Labels:  map[string]string{"app": map[string]string{"catalog-v1": "catalog", "catalog-v2": "catalog", "inventory": "inventory"}[name], "version": version},
			Address: "127.0.0.1", Port: port, TargetPort: 8080, Healthy: healthy}
	}
	mesh.Endpoints = []model.Endpoint{
		ep("catalog-v1", "v1", 0, 20001, true),
		ep("catalog-v2", "v2", 0, 20002, true),
		ep("catalog-v2", "v2", 1, 20003, false),
		ep("inventory", "v1", 0, 20004, false),
	}
	return mesh
}

// demoForwarder compiles the frontend sidecar's config for the demo exactly as a
// running proxy would.
func demoForwarder(t *testing.T) *forward.Forwarder {
	t.Helper()
	return compileFor(t, demoMesh(t), &model.Proxy{ID: "frontend-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "frontend"},
		Labels: map[string]string{"app": "frontend", "version": "v1"}, Capture: model.CaptureNone, IP: "127.0.0.1", ServiceAccount: "frontend",
		InboundPorts: map[int]int{8080: 21000}, AppPorts: map[int]int{8080: 21001}, OutboundHTTPPort: 21002})
}

// catalogV2Forwarder is catalog-v2-0's sidecar, whose inbound listener is the
// endpoint 127.0.0.1:20002 frontend's canary cluster names.
func catalogV2Forwarder(t *testing.T) *forward.Forwarder {
	t.Helper()
	return compileFor(t, demoMesh(t), &model.Proxy{ID: "catalog-v2-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "catalog-v2"},
		Labels: map[string]string{"app": "catalog", "version": "v2"}, Capture: model.CaptureNone, IP: "127.0.0.1", ServiceAccount: "catalog",
		InboundPorts: map[int]int{8080: 20002, 9090: 20012}, AppPorts: map[int]int{8080: 20102, 9090: 20112}, OutboundHTTPPort: 20202})
}

// compileFor translates the mesh for one proxy, decodes the result with the proxy's
// decoder and compiles it with its filters (RBAC included), as a running proxy does.
func compileFor(t *testing.T, mesh *model.Mesh, proxy *model.Proxy) *forward.Forwarder {
	t.Helper()
	res, err := translate.ForProxy(mesh, proxy)
	if err != nil {
		t.Fatal(err)
	}
	u := xdsclient.Update{Listeners: map[string]*resource.Listener{}, Routes: map[string]*resource.RouteConfig{},
		Clusters: map[string]*resource.Cluster{}, Endpoints: map[string]*resource.Endpoints{}}
	d := resource.NewDecoder()
	for _, r := range res.Listeners {
		dl, err := d.Listener(mustAny(t, r.(*listener.Listener)))
		if err != nil {
			t.Fatal(err)
		}
		u.Listeners[dl.Name] = dl.Resource
	}
	for _, r := range res.Routes {
		dr, err := d.RouteConfig(mustAny(t, r.(*route.RouteConfiguration)))
		if err != nil {
			t.Fatal(err)
		}
		u.Routes[dr.Name] = dr.Resource
	}
	for _, r := range res.Clusters {
		dc, err := d.Cluster(mustAny(t, r.(*cluster.Cluster)))
		if err != nil {
			t.Fatal(err)
		}
		u.Clusters[dc.Name] = dc.Resource
	}
	for _, r := range res.Endpoints {
		de, err := d.Endpoints(mustAny(t, r.(*endpoint.ClusterLoadAssignment)))
		if err != nil {
			t.Fatal(err)
		}
		u.Endpoints[de.Name] = de.Resource
	}
	var cfg atomic.Pointer[forward.Config]
	compiled, err := forward.CompileWith(u, nil, tlsconf.Env{}, forward.FilterDeps{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store(compiled)
	return forward.New(forward.Options{Config: &cfg})
}

// serveAdmin serves a forwarder's POST /explain on loopback as skein proxy does.
func serveAdmin(t *testing.T, fwd *forward.Forwarder) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- admin.Serve(ctx, admin.Options{Address: "127.0.0.1:0", Metrics: stats.New(), OnListening: func(a string) { addr <- a },
			Explain: func(req admin.ExplainRequest) (any, error) {
				return fwd.ExplainConn(forward.ExplainInput{Listener: req.Listener, Destination: req.Destination, TLS: req.TLS,
					SourcePrincipal: req.SourcePrincipal, SourceAddress: req.SourceAddress, Request: req.Request()})
			}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return a
	case err := <-done:
		t.Fatal(err)
	}
	return ""
}

func mustAny(t *testing.T, m interface {
	ProtoReflect() protoreflect.Message
}) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestExplainGolden explains requests from frontend through the admin API of two
// sidecars (frontend's, then catalog-v2-0's for requests forwarded to it), as
// `skein explain` does, and compares the rendered trace with golden files.
func TestExplainGolden(t *testing.T) {
	frontend := serveAdmin(t, demoForwarder(t))
	catalog := serveAdmin(t, catalogV2Forwarder(t))
	source := Target{Proxy: "frontend-0.default", Workload: "frontend", Namespace: "default", Admin: frontend}
	targets := []Target{source, {Proxy: "catalog-v2-0.default", Workload: "catalog-v2", Namespace: "default", Admin: catalog, Inbound: []string{"127.0.0.1:20002", "127.0.0.1:20012"}}}
	canary := map[string][]string{"x-canary": {"true"}}
	tests := []struct {
		name string
		req  admin.ExplainRequest
	}{
		// Forwarded to catalog-v2-0, whose ALLOW policy catalog-readers admits a GET.
		{"matched_canary", admin.ExplainRequest{Method: "GET", URL: "http://catalog:8080/items/7", Headers: canary}},
		{"matched_split", admin.ExplainRequest{Method: "GET", URL: "http://catalog:8080/items/7", Headers: map[string][]string{"x-canary": {"false"}}}},
		{"no_route", admin.ExplainRequest{Method: "GET", URL: "http://nosuch:8080/"}},
		{"no_healthy_upstream", admin.ExplainRequest{Method: "POST", URL: "http://inventory:8080/stock"}},
		// Refused by catalog-v2-0's sidecar: the DENY policy deny-admin matches.
		{"denied_by_deny_policy", admin.ExplainRequest{Method: "GET", URL: "http://catalog:8080/admin/keys", Headers: canary}},
		// Refused: a DELETE matches no rule of the only ALLOW policy.
		{"denied_no_allow_match", admin.ExplainRequest{Method: "DELETE", URL: "http://catalog:8080/items/7", Headers: canary}},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ExplainPath(ctx, http.DefaultClient, source, targets, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			RenderPath(&b, "frontend.default (frontend-0.default)", tc.req, p)
			golden := filepath.Join("testdata", "explain", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("explain output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExplainUsesTheRequestPathMatcher(t *testing.T) {
	// The route explain reports is the route the request path takes.
	fwd := demoForwarder(t)
	r, _ := admin.ParseExplain(admin.ExplainRequest{URL: "http://catalog:8080/", Headers: map[string][]string{"X-Canary": {"true"}}})
	ex, err := fwd.Explain("", r)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Route != "canary" || len(ex.Clusters) != 1 || ex.Clusters[0].Subset != "v2" {
		t.Errorf("explain chose %q %+v, want canary to subset v2", ex.Route, ex.Clusters)
	}
	if _, err := fwd.Explain("no-such-listener", r); err == nil {
		t.Errorf("explain on an unknown listener did not fail")
	}
	_ = http.MethodGet
}
