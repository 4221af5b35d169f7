package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// frontFor serves one route to cluster "c" (STATIC, the given backends) through a real
// Forwarder, and returns the proxy's URL.
func frontFor(t *testing.T, policy resource.ClusterPolicy, lb resource.LBPolicy, hash []resource.HashPolicy, backends ...string) string {
	t.Helper()
	rc := &resource.RouteConfig{Name: "l", VirtualHosts: []resource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []resource.Route{
		{Name: "default", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true},
			Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}}, HashPolicies: hash},
	}}}}
	eps := &resource.Endpoints{ClusterName: "c"}
	for _, b := range backends {
		eps.Endpoints = append(eps.Endpoints, resource.Endpoint{Address: strings.TrimPrefix(b, "http://"), Healthy: true, Weight: 1})
	}
	u := xdsclient.Update{
		Listeners: map[string]*resource.Listener{"l": {Name: "l", FilterChains: []*resource.FilterChain{{Name: "0", HTTP: &resource.HTTPConnectionManager{Inline: rc}}}}},
		Clusters:  map[string]*resource.Cluster{"c": {Name: "c", Kind: resource.ClusterStatic, LB: lb, Policy: policy, ConnectTimeout: time.Second, Static: eps}},
	}
	var cfg atomic.Pointer[Config]
	compiled, err := Compile(u, nil, tlsconf.Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store(compiled)
	f := New(Options{Config: &cfg, Metrics: stats.New()})
	t.Cleanup(f.Close)
	front := httptest.NewServer(f.HTTPHandler("l", "0"))
	t.Cleanup(front.Close)
	return front.URL
}

func getBody(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestMaxRequestsPerConnection: with max_requests_per_connection 2, six sequential
// requests use three upstream connections; without it, one.
func TestMaxRequestsPerConnection(t *testing.T) {
	for _, tc := range []struct {
		max   uint32
		conns int
	}{{2, 3}, {0, 1}} {
		var mu sync.Mutex
		seen := map[string]bool{}
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.RemoteAddr] = true
			mu.Unlock()
		}))
		url := frontFor(t, resource.ClusterPolicy{MaxRequestsPerConnection: tc.max}, resource.LBRoundRobin, nil, backend.URL)
		for range 6 {
			getBody(t, url+"/")
		}
		backend.Close()
		if len(seen) != tc.conns {
			t.Errorf("max_requests_per_connection %d: 6 requests used %d connections, want %d", tc.max, len(seen), tc.conns)
		}
	}
}

// TestIdleTimeout: a cluster's idle_timeout closes an idle upstream connection, so the
// next request opens a new one.
func TestIdleTimeout(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.RemoteAddr] = true
		mu.Unlock()
	}))
	defer backend.Close()
	url := frontFor(t, resource.ClusterPolicy{IdleTimeout: 100 * time.Millisecond}, resource.LBRoundRobin, nil, backend.URL)
	getBody(t, url+"/")
	getBody(t, url+"/")
	time.Sleep(300 * time.Millisecond)
	getBody(t, url+"/")
	if len(seen) != 2 {
		t.Errorf("want 2 upstream connections (one closed when idle), got %d", len(seen))
	}
}

// TestOverflowAnswers503UO: a request beyond max_requests gets 503 and
// x-envoy-overloaded while the first is in flight.
func TestOverflowAnswers503UO(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	defer backend.Close()
	url := frontFor(t, resource.ClusterPolicy{Thresholds: &resource.Thresholds{MaxConnections: 10, MaxPendingRequests: 10, MaxRequests: 1, MaxRetries: 3}}, resource.LBRoundRobin, nil, backend.URL)
	done := make(chan int)
	go func() {
		resp, err := http.Get(url + "/")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-started // the first request is in flight at the backend
	resp, _ := getBody(t, url+"/")
	close(release)
	if resp.StatusCode != 503 || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Fatalf("second request: %d %v, want 503 with x-envoy-overloaded", resp.StatusCode, resp.Header)
	}
	if code := <-done; code != 200 {
		t.Fatalf("first request: %d", code)
	}
}

// TestOutlierEjectionThroughForwarder: the forwarder reports answers, so a backend
// answering 500 is ejected after the configured run and traffic moves to the other.
func TestOutlierEjectionThroughForwarder(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer bad.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer good.Close()
	od := &resource.OutlierDetection{Consecutive5xx: 2, EnforcingConsecutive5xx: 100, Interval: time.Second,
		BaseEjectionTime: time.Minute, MaxEjectionTime: time.Minute, MaxEjectionPercent: 100}
	url := frontFor(t, resource.ClusterPolicy{Outlier: od}, resource.LBRoundRobin, nil, bad.URL, good.URL)
	errors := 0
	for range 20 {
		if resp, _ := getBody(t, url+"/"); resp.StatusCode == 500 {
			errors++
		}
	}
	if errors != 2 {
		t.Fatalf("%d answers 500 of 20, want 2 (then ejected)", errors)
	}
}

// TestHashCookieThroughForwarder: the generated cookie comes back in Set-Cookie and
// keeps the client on one backend.
func TestHashCookieThroughForwarder(t *testing.T) {
	var backends []string
	for i := range 3 {
		name := string(rune('a' + i))
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		defer b.Close()
		backends = append(backends, b.URL)
	}
	hash := []resource.HashPolicy{{Cookie: &resource.HashCookie{Name: "s", TTL: time.Minute, HasTTL: true}}}
	url := frontFor(t, resource.ClusterPolicy{}, resource.LBRingHash, hash, backends...)
	resp, first := getBody(t, url+"/")
	set := resp.Header.Get("Set-Cookie")
	if !strings.HasPrefix(set, `s="`) {
		t.Fatalf("Set-Cookie %q", set)
	}
	for range 10 {
		if _, got := getBody(t, url+"/", "Cookie", strings.Split(set, ";")[0]); got != first {
			t.Fatalf("with the cookie: %s, first answer %s", got, first)
		}
	}
}

// HTTP/1.1 upstream requests go through the h1client pool (no http.Transport
// goroutines): its connections are the ones left idle.
func TestHTTP1UpstreamUsesH1Client(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
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
	for i := 0; i < 3; i++ {
		if _, body := getBody(t, front.URL+"/"); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	if n := f.h1c.IdleCount(); n != 1 {
		t.Fatalf("h1client holds %d idle connections, want 1", n)
	}
}
