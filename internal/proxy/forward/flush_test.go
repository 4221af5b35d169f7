package forward

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// TestStreamedResponseIsNotBuffered: a response without a Content-Length (chunked; gRPC
// is the same case) reaches the client write by write, while the upstream still holds
// the rest back; FlushInterval 0 only delays responses of known length.
func TestStreamedResponseIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		_, _ = w.Write([]byte("second\n"))
	}))
	defer backend.Close()
	defer close(release)
	rc := &resource.RouteConfig{Name: "l", VirtualHosts: []resource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []resource.Route{
		{Name: "default", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true}, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}}},
	}}}}
	u := xdsclient.Update{
		Listeners: map[string]*resource.Listener{"l": {Name: "l", FilterChains: []*resource.FilterChain{{Name: "0", HTTP: &resource.HTTPConnectionManager{Inline: rc}}}}},
		Clusters: map[string]*resource.Cluster{"c": {Name: "c", Kind: resource.ClusterStatic,
			Static: &resource.Endpoints{ClusterName: "c", Endpoints: []resource.Endpoint{{Address: strings.TrimPrefix(backend.URL, "http://"), Healthy: true, Weight: 1}}}}},
	}
	var cfg atomic.Pointer[Config]
	compiled, err := Compile(u, nil, tlsconf.Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store(compiled)
	f := New(Options{Config: &cfg, Metrics: stats.New()})
	defer f.Close()
	front := httptest.NewServer(f.HTTPHandler("l", "0"))
	defer front.Close()
	resp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "first\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the first chunk did not arrive while the upstream held the rest back: the proxy buffers streams")
	}
}
