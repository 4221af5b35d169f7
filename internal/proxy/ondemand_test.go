package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/xds/server"
)

// TestScopeInferredFromTraffic: a client sidecar whose Sidecar declares no egress host
// ("~/*") gets no outbound config; with scope.skein.dev/infer-from-traffic its first
// request for catalog is held while the control plane adds catalog to its scope, and
// is answered by catalog; only catalog joins the scope. Without the annotation the
// same request gets "no route" (404). Real control plane, real proxy, real sockets.
func TestScopeInferredFromTraffic(t *testing.T) {
	for _, infer := range []bool{true, false} {
		t.Run("infer="+strconv.FormatBool(infer), func(t *testing.T) {
			catalog := startBackend(t, "catalog", false)
			other := startBackend(t, "other", false)
			srv := server.New(server.Options{Debounce: 10 * time.Millisecond})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
			t.Cleanup(func() { cancel(); <-done })

			svc := func(name string) *model.Service {
				return &model.Service{NamespacedName: model.NamespacedName{Namespace: "default", Name: name}, Selector: map[string]string{"app": name},
					Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}}}
			}
			ep := func(name string, b *backend) model.Endpoint {
				return model.Endpoint{Workload: model.NamespacedName{Namespace: "default", Name: name}, Labels: map[string]string{"app": name},
					Address: "127.0.0.1", Port: b.srv.Listener.Addr().(*net.TCPAddr).Port, TargetPort: 8080, Healthy: true}
			}
			sc := &model.Sidecar{NamespacedName: model.NamespacedName{Namespace: "default", Name: "client"},
				WorkloadSelector: map[string]string{"app": "client"}, EgressHosts: []string{"~/*"}}
			if infer {
				sc.InferFromTraffic, sc.InferredTTL = true, time.Hour
			}
			srv.Update(&model.Mesh{
				Generation: 1,
				Services:   []*model.Service{svc("catalog"), svc("other")},
				Endpoints:  []model.Endpoint{ep("catalog", catalog), ep("other", other)},
				Sidecars:   []*model.Sidecar{sc},
			})
			_, p, _ := net.SplitHostPort(freeAddr(t))
			outPort, _ := strconv.Atoi(p)
			node := &model.Proxy{ID: "client-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "client"},
				Labels: map[string]string{"app": "client"}, Capture: model.CaptureNone, IP: "127.0.0.1", OutboundHTTPPort: outPort}
			px := runProxy(t, proxy.Options{XDSAddress: ln.Addr().String(), Node: node, AdminAddress: "127.0.0.1:0"})
			waitFor(t, "proxy ready", func() bool { code, _ := px.get(t, "/ready"); return code == 200 })
			if got := clusterNames(t, px); len(got) != 0 {
				t.Fatalf("scoped to nothing, the proxy has clusters %v", got)
			}

			proxyURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(outPort))
			client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
			resp, err := client.Get("http://catalog:8080/hello")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !infer {
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("without inference: status %d (%s), want 404 no route", resp.StatusCode, body)
				}
				return
			}
			var echo echoReply
			if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &echo) != nil || echo.Backend != "catalog" {
				t.Fatalf("first request for catalog: status %d body %s, want catalog's answer", resp.StatusCode, body)
			}
			got := clusterNames(t, px)
			want := "outbound|8080||catalog.default.svc.cluster.local"
			if len(got) != 1 || got[0] != want {
				t.Errorf("clusters after the request: %v, want only %s", got, want)
			}
			// The next request needs no control plane: it is in the config.
			resp, err = client.Get("http://catalog:8080/again")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("second request: %v %v", err, resp)
			}
			resp.Body.Close()
			// A host that is no mesh service is answered at once, not held.
			start := time.Now()
			resp, err = client.Get("http://nowhere.example:8080/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || time.Since(start) > 2*time.Second {
				t.Errorf("unknown non-mesh host: status %d after %v, want a prompt 404", resp.StatusCode, time.Since(start))
			}
		})
	}
}

// clusterNames lists the outbound clusters in the proxy's config dump.
func clusterNames(t *testing.T, px *runningProxy) []string {
	t.Helper()
	_, body := px.get(t, "/config_dump")
	var dump struct {
		Types map[string]struct {
			Resources map[string]json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatal(err)
	}
	var out []string
	for name := range dump.Types["type.googleapis.com/envoy.config.cluster.v3.Cluster"].Resources {
		if len(name) > 9 && name[:9] == "outbound|" {
			out = append(out, name)
		}
	}
	return out
}
