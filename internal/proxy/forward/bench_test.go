package forward

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// BenchmarkRewrite: the header handling of every forwarded request (hop-by-hop
// headers, X-Forwarded-*, a fresh x-request-id), edited in place.
func BenchmarkRewrite(b *testing.B) {
	in := httptest.NewRequest("POST", "http://catalog:8080/items", nil)
	in.Header.Set("User-Agent", "fortio.org/fortio-1.68.2")
	in.Header.Set("Content-Type", "application/octet-stream")
	b.ReportAllocs()
	for b.Loop() {
		delete(in.Header, "X-Request-Id")
		delete(in.Header, "X-Forwarded-Proto")
		outboundHeaders(in)
	}
}

// BenchmarkServeHTTP is one proxy hop in process: a 1 KB POST through the forwarder's
// handler (route match, cluster pick, header rewrite, upstream round trip over a kept-
// alive loopback connection, response copy, metrics) to a real HTTP server that echoes
// the body. allocs/op is the proxy's plus the test client's share of one request.
func BenchmarkServeHTTP(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	}))
	defer backend.Close()
	rc := &resource.RouteConfig{Name: "l", VirtualHosts: []resource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []resource.Route{
		{Name: "default", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true}, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}}},
	}}}}
	u := xdsclient.Update{
		Listeners: map[string]*resource.Listener{"l": {Name: "l", Address: "127.0.0.1:0", FilterChains: []*resource.FilterChain{{Name: "0", HTTP: &resource.HTTPConnectionManager{Inline: rc}}}}},
		Clusters: map[string]*resource.Cluster{"c": {Name: "c", Kind: resource.ClusterStatic,
			Static: &resource.Endpoints{ClusterName: "c", Endpoints: []resource.Endpoint{{Address: strings.TrimPrefix(backend.URL, "http://"), Healthy: true, Weight: 1}}}}},
	}
	var cfg atomic.Pointer[Config]
	compiled, err := Compile(u, nil, tlsconf.Env{})
	if err != nil {
		b.Fatal(err)
	}
	cfg.Store(compiled)
	f := New(Options{Config: &cfg, Metrics: stats.New()})
	defer f.Close()
	h := f.HTTPHandler("l", "0")
	payload := bytes.Repeat([]byte("x"), 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "http://server:8080/", bytes.NewReader(payload))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK || w.Body.Len() != len(payload) {
				b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
			}
		}
	})
}
