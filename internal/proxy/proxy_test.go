package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// mesh is the test topology: one HTTP listener with RDS and a set of backends.
type mesh struct {
	cp       *controlPlane
	px       *runningProxy
	httpAddr string
	a, b     *backend
	deadAddr string // nothing listens here: connect failures
}

func newMesh(t *testing.T) *mesh {
	m := &mesh{cp: startControlPlane(t), httpAddr: freeAddr(t), deadAddr: freeAddr(t)}
	m.a = startBackend(t, "a", false)
	m.b = startBackend(t, "b", false)
	m.px = startProxy(t, m.cp)
	return m
}

func (m *mesh) routes(t testing.TB, weightA uint32) *routev3.RouteConfiguration {
	header := func(name string, sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
	}
	return &routev3.RouteConfiguration{
		Name: "outbound_http_proxy",
		VirtualHosts: []*routev3.VirtualHost{
			{
				Name:    "catalog.default.svc.cluster.local:8080",
				Domains: []string{"catalog.default.svc.cluster.local", "catalog", "catalog:8080", "*.catalog.example"},
				Routes: []*routev3.Route{
					{Name: "exact", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}, Action: toCluster("b")},
					{Name: "regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/items/[0-9]+"}}}, Action: toCluster("b")},
					{Name: "header", Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
						Headers:       []*routev3.HeaderMatcher{header("x-version", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "v2"}})},
					}, Action: toCluster("b")},
					{Name: "weighted", Match: prefixMatch("/weighted"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
							{Name: "a", Weight: wrapperspb.UInt32(weightA)}, {Name: "b", Weight: wrapperspb.UInt32(100 - weightA)},
						}}},
					}}},
					{Name: "slow", Match: prefixMatch("/slow"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}, Timeout: durationpb.New(100 * time.Millisecond),
					}}},
					{Name: "empty", Match: prefixMatch("/empty"), Action: toCluster("empty")},
					{Name: "dead", Match: prefixMatch("/dead"), Action: toCluster("dead")},
					{Name: "missing", Match: prefixMatch("/missing"), Action: toCluster("no-such-cluster")},
					{Name: "default", Match: prefixMatch("/"), Action: toCluster("a")},
				},
			},
			{Name: "other:80", Domains: []string{"other"}, Routes: []*routev3.Route{{Name: "other", Match: prefixMatch("/"), Action: toCluster("b")}}},
		},
	}
}

func (m *mesh) snapshot(t testing.TB, weightA uint32, extra ...func(*snapshot)) snapshot {
	s := snapshot{
		listeners: []types.Resource{httpListener(t, "outbound_http_proxy", m.httpAddr, "outbound_http_proxy")},
		routes:    []types.Resource{m.routes(t, weightA)},
		clusters: []types.Resource{
			edsCluster(t, "a", false, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, "b", false, clusterv3.Cluster_LEAST_REQUEST),
			edsCluster(t, "empty", false, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, "dead", false, clusterv3.Cluster_ROUND_ROBIN),
		},
		endpoints: []types.Resource{
			endpoints("a", m.a.addr()), endpoints("b", m.b.addr()), endpoints("empty"), endpoints("dead", m.deadAddr),
		},
	}
	for _, f := range extra {
		f(&s)
	}
	return s
}

func request(t testing.TB, client *http.Client, method, target, host string, header http.Header) (int, echoReply) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	var reply echoReply
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &reply)
	return resp.StatusCode, reply
}

func TestHTTPRouting(t *testing.T) {
	m := newMesh(t)
	if code, _ := m.px.get(t, "/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready before config = %d, want 503", code)
	}
	m.cp.set(t, m.snapshot(t, 90))
	m.px.waitVersion(t, m.cp)
	if code, _ := m.px.get(t, "/ready"); code != http.StatusOK {
		t.Errorf("/ready after config = %d, want 200", code)
	}

	tests := []struct {
		name, host, path string
		header           http.Header
		wantCode         int
		wantBackend      string
	}{
		{name: "fqdn prefix", host: "catalog.default.svc.cluster.local", path: "/anything", wantCode: 200, wantBackend: "a"},
		{name: "short name with port", host: "catalog:8080", path: "/", wantCode: 200, wantBackend: "a"},
		{name: "port stripped for portless domain", host: "catalog.default.svc.cluster.local:8080", path: "/", wantCode: 200, wantBackend: "a"},
		{name: "suffix wildcard", host: "x.catalog.example", path: "/", wantCode: 200, wantBackend: "a"},
		{name: "exact path", host: "catalog", path: "/exact", wantCode: 200, wantBackend: "b"},
		{name: "exact path is not a prefix", host: "catalog", path: "/exact/more", wantCode: 200, wantBackend: "a"},
		{name: "regex full match", host: "catalog", path: "/items/42", wantCode: 200, wantBackend: "b"},
		{name: "regex must match fully", host: "catalog", path: "/items/42x", wantCode: 200, wantBackend: "a"},
		{name: "header match", host: "catalog", path: "/", header: http.Header{"X-Version": {"v2"}}, wantCode: 200, wantBackend: "b"},
		{name: "header mismatch", host: "catalog", path: "/", header: http.Header{"X-Version": {"v3"}}, wantCode: 200, wantBackend: "a"},
		{name: "second virtual host", host: "other", path: "/", wantCode: 200, wantBackend: "b"},
		{name: "unknown host", host: "nowhere", path: "/", wantCode: 404},
		{name: "no healthy endpoint", host: "catalog", path: "/empty", wantCode: 503},
		{name: "unknown cluster", host: "catalog", path: "/missing", wantCode: 503},
		{name: "connect failure", host: "catalog", path: "/dead", wantCode: 503},
		{name: "route timeout", host: "catalog", path: "/slow?sleep=2s", wantCode: 504},
		{name: "within timeout", host: "catalog", path: "/slow?sleep=1ms", wantCode: 200, wantBackend: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reply := request(t, http.DefaultClient, "GET", fmtURL(m.httpAddr, tc.path), tc.host, tc.header)
			if code != tc.wantCode || reply.Backend != tc.wantBackend {
				t.Fatalf("got %d from %q, want %d from %q", code, reply.Backend, tc.wantCode, tc.wantBackend)
			}
			if tc.wantCode != 200 {
				return
			}
			if reply.Host != tc.host {
				t.Errorf("upstream Host = %q, want %q (kept)", reply.Host, tc.host)
			}
			if reply.Header.Get("X-Forwarded-Proto") != "http" || reply.Header.Get("X-Request-Id") == "" {
				t.Errorf("missing x-forwarded-proto or x-request-id: %v", reply.Header)
			}
		})
	}

	t.Run("explicit proxy absolute URL", func(t *testing.T) {
		proxyURL, _ := url.Parse("http://" + m.httpAddr)
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
		code, reply := request(t, client, "GET", "http://catalog:8080/exact", "", nil)
		if diff := cmp.Diff(echoReply{Backend: "b", Host: "catalog:8080", Path: "/exact"}, echoReply{Backend: reply.Backend, Host: reply.Host, Path: reply.Path}); code != 200 || diff != "" {
			t.Fatalf("code %d, reply (-want +got):\n%s", code, diff)
		}
		if reply.Header.Get("Proxy-Connection") != "" {
			t.Errorf("hop-by-hop Proxy-Connection forwarded")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		_, body := m.px.get(t, "/stats/prometheus")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		// Every answer is counted once by this (source) reporter with its flags.
		for _, tc := range []struct {
			code, flags string
			want        float64
		}{
			{"200", "-", 13}, // the 12 routed table cases and the explicit-proxy request
			{"404", "NR", 1},
			{"503", "UH", 1},
			{"503", "NC", 1},
			{"503", "UF", 1},
			{"504", "UT", 1},
		} {
			labels := map[string]string{"reporter": "source", "source_workload": "client", "source_workload_namespace": "default",
				"destination_workload": "unknown", "request_protocol": "http", "response_code": tc.code, "response_flags": tc.flags,
				"connection_security_policy": "unknown"}
			if got := counterValue(families["istio_requests_total"], labels); got != tc.want {
				t.Errorf("istio_requests_total{code=%s,flags=%s} = %v, want %v", tc.code, tc.flags, got, tc.want)
			}
		}
		for _, name := range []string{"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
			if f := families[name]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
				t.Errorf("%s missing or not a histogram", name)
			}
		}
		if got := counterValue(families["skein_xds_updates_total"], map[string]string{"type": "lds", "result": "ack"}); got < 1 {
			t.Errorf("skein_xds_updates_total{lds,ack} = %v, want >= 1", got)
		}
	})

	t.Run("config dump", func(t *testing.T) {
		_, body := m.px.get(t, "/config_dump")
		var dump struct {
			Types map[string]struct {
				Version   string
				Resources map[string]json.RawMessage
			} `json:"types"`
		}
		if err := json.Unmarshal([]byte(body), &dump); err != nil {
			t.Fatal(err)
		}
		var names []string
		for n := range dump.Types["type.googleapis.com/envoy.config.cluster.v3.Cluster"].Resources {
			names = append(names, n)
		}
		if len(names) != 4 {
			t.Errorf("config dump clusters = %v, want 4", names)
		}
		if _, ok := dump.Types["type.googleapis.com/envoy.config.listener.v3.Listener"].Resources["outbound_http_proxy"]; !ok {
			t.Errorf("config dump lacks listener outbound_http_proxy: %s", body)
		}
	})
}

func counterValue(f *dto.MetricFamily, labels map[string]string) float64 {
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found && v != "" {
				match = false
			}
		}
		if match {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestWeightedClusters(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.snapshot(t, 90))
	m.px.waitVersion(t, m.cp)
	counts := map[string]int{}
	for range 1000 {
		_, reply := request(t, http.DefaultClient, "GET", fmtURL(m.httpAddr, "/weighted"), "catalog", nil)
		counts[reply.Backend]++
	}
	if counts["a"] < 860 || counts["a"] > 940 || counts["a"]+counts["b"] != 1000 {
		t.Fatalf("90/10 split over 1000 requests gave %v, want a within 900±40", counts)
	}
}

func TestNACKKeepsServing(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.snapshot(t, 90))
	m.px.waitVersion(t, m.cp)

	bad := m.snapshot(t, 90, func(s *snapshot) {
		l := httpListener(t, "outbound_http_proxy", m.httpAddr, "outbound_http_proxy")
		l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(1024)
		s.listeners = []types.Resource{l}
	})
	m.cp.set(t, bad)
	const want = "unsupported field envoy.config.listener.v3.Listener.per_connection_buffer_limit_bytes"
	waitFor(t, "NACK naming the field", func() bool {
		for _, msg := range m.cp.nackMessages() {
			if strings.Contains(msg, want) {
				return true
			}
		}
		return false
	})
	if code, reply := request(t, http.DefaultClient, "GET", fmtURL(m.httpAddr, "/exact"), "catalog", nil); code != 200 || reply.Backend != "b" {
		t.Fatalf("after NACK: %d from %q, want 200 from b (old config)", code, reply.Backend)
	}
	_, body := m.px.get(t, "/config_dump")
	if !strings.Contains(body, want) {
		t.Errorf("config dump does not show the last NACK")
	}

	// A second HTTP filter is outside the subset too.
	twoFilters := m.snapshot(t, 90, func(s *snapshot) {
		l := httpListener(t, "outbound_http_proxy", m.httpAddr, "outbound_http_proxy")
		s.listeners = []types.Resource{l}
		hcmAny := l.FilterChains[0].Filters[0].GetTypedConfig()
		_ = hcmAny
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: l.FilterChains[0].Filters})
	})
	m.cp.set(t, twoFilters)
	waitFor(t, "NACK for two filter chains", func() bool {
		for _, msg := range m.cp.nackMessages() {
			if strings.Contains(msg, "filter_chains[1].filter_chain_match: same match as filter_chains[0]") {
				return true
			}
		}
		return false
	})
	_, body = m.px.get(t, "/stats/prometheus")
	// The server resends a rejected version at once; the proxy must damp the loop.
	nacks := counterValueText(t, body, "skein_xds_updates_total", map[string]string{"type": "lds", "result": "nack"})
	if nacks < 2 || nacks > 6 {
		t.Errorf("skein_xds_updates_total{lds,nack} = %v, want 2..6 (damped):\n%s", nacks, grep(body, "skein_xds"))
	}
}

func counterValueText(t *testing.T, body, name string, labels map[string]string) float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return counterValue(families[name], labels)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestConfigSwapUnderLoad(t *testing.T) {
	m := newMesh(t)
	m.cp.set(t, m.snapshot(t, 90))
	m.px.waitVersion(t, m.cp)

	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest("POST", fmtURL(m.httpAddr, "/weighted"), bytes.NewReader([]byte("payload")))
				req.Host = "catalog"
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		})
	}
	for i := range 10 {
		m.cp.set(t, m.snapshot(t, uint32(10+i*8)))
		time.Sleep(50 * time.Millisecond)
	}
	m.px.waitVersion(t, m.cp)
	cancel()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d ok, %d failed during swaps; first failure: %v", ok.Load(), failed.Load(), firstErr.Load())
	}
}

func TestTCPProxyHalfClose(t *testing.T) {
	cp := startControlPlane(t)
	echo := startTCPEcho(t)
	tcpAddr := freeAddr(t)
	px := startProxy(t, cp)
	cp.set(t, snapshot{
		listeners: []types.Resource{tcpListener(t, "outbound|9000|echo.default.svc.cluster.local", tcpAddr, "outbound|9000||echo.default.svc.cluster.local")},
		clusters:  []types.Resource{edsCluster(t, "outbound|9000||echo.default.svc.cluster.local", false, clusterv3.Cluster_ROUND_ROBIN)},
		endpoints: []types.Resource{endpoints("outbound|9000||echo.default.svc.cluster.local", echo)},
	})
	px.waitVersion(t, cp)

	conn, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := bytes.Repeat([]byte("skein "), 50000)
	go func() {
		_, _ = conn.Write(payload)
		_ = conn.(*net.TCPConn).CloseWrite() // half-close: the echo must still answer
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
	waitFor(t, "tcp metrics", func() bool {
		_, body := px.get(t, "/stats/prometheus")
		labels := map[string]string{"reporter": "source", "destination_service": "echo.default.svc.cluster.local",
			"destination_service_name": "echo", "request_protocol": "tcp", "response_flags": "-"}
		return counterValueText(t, body, "istio_tcp_connections_opened_total", labels) == 1 &&
			counterValueText(t, body, "istio_tcp_connections_closed_total", labels) == 1 &&
			counterValueText(t, body, "istio_tcp_received_bytes_total", labels) == 300000 &&
			counterValueText(t, body, "istio_tcp_sent_bytes_total", labels) == 300000
	})
}

// startTCPEcho echoes until the client half-closes, then closes its write side.
func startTCPEcho(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}
