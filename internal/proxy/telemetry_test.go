package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/google/go-cmp/cmp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/tracing"
	"skein.dev/skein/internal/testutil/otlp"
)

const (
	catalogOut = "outbound|8080||catalog.default.svc.cluster.local"
	catalogV9  = "outbound|8080|v9|catalog.default.svc.cluster.local"
	echoOut    = "outbound|9000||tcp-echo.default.svc.cluster.local"
)

// telemetryMesh is two sidecars: frontend's outbound listeners reach catalog's inbound
// listeners, which reach a backend and a TCP echo. Both export spans to one OTLP
// receiver and write access logs.
type telemetryMesh struct {
	frontend, catalog       *runningProxy
	outHTTP, outTCP         string
	frontendLog, catalogLog string
	backend                 *backend
	receiver                *otlp.Receiver
}

func newTelemetryMesh(t *testing.T) *telemetryMesh {
	cp := startControlPlane(t)
	m := &telemetryMesh{outHTTP: freeAddr(t), outTCP: freeAddr(t), receiver: otlp.Start(t), backend: startBackend(t, "catalog-app", false)}
	dir := t.TempDir()
	m.frontendLog, m.catalogLog = filepath.Join(dir, "frontend.access.log"), filepath.Join(dir, "catalog.access.log")
	inHTTP, inTCP := freeAddr(t), freeAddr(t)
	echo := startTCPEcho(t)
	start := func(id, workload, app, logPath string) *runningProxy {
		return startProxyWith(t, cp, func(o *proxy.Options) {
			o.Node = &model.Proxy{ID: id, Workload: model.NamespacedName{Namespace: "default", Name: workload},
				Labels: map[string]string{"app": app, "version": "v1"}, Capture: model.CaptureNone, IP: "127.0.0.1"}
			o.AccessLogPath = logPath
			o.Tracing = &tracing.Options{Exporter: tracing.ExporterOTLPGRPC, Endpoint: m.receiver.Addr, SamplingPercent: 100, BatchTimeout: 50 * time.Millisecond}
		})
	}
	m.frontend = start("frontend-0.default", "frontend", "frontend", m.frontendLog)
	m.catalog = start("catalog-v1-0.default", "catalog-v1", "catalog", m.catalogLog)

	cp.setFor(t, m.frontend.node, snapshot{
		listeners: []types.Resource{
			httpListener(t, "outbound_http_proxy", m.outHTTP, "outbound_http_proxy"),
			tcpListener(t, "outbound|9000|tcp-echo.default.svc.cluster.local", m.outTCP, echoOut),
		},
		routes: []types.Resource{&routev3.RouteConfiguration{Name: "outbound_http_proxy", VirtualHosts: []*routev3.VirtualHost{{
			Name: "catalog.default.svc.cluster.local:8080", Domains: []string{"catalog", "catalog:8080"},
			Routes: []*routev3.Route{
				{Name: "v9", Match: prefixMatch("/v9"), Action: toCluster(catalogV9)},
				{Name: "default", Match: prefixMatch("/"), Action: toCluster(catalogOut)},
			},
		}}}},
		clusters: []types.Resource{
			edsCluster(t, catalogOut, false, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, catalogV9, false, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, echoOut, false, clusterv3.Cluster_ROUND_ROBIN),
		},
		endpoints: []types.Resource{endpoints(catalogOut, inHTTP), endpoints(catalogV9), endpoints(echoOut, inTCP)},
	})
	// catalog's inbound HTTP listener carries the RBAC filters an AuthorizationPolicy
	// becomes (Istio's order: AUDIT as LOG, then DENY).
	inbound := withHTTPFilters(t, httpListener(t, "inbound|8080", inHTTP, "inbound|8080"),
		rbacFilter(t, rbacv3.RBAC_LOG, "ns[default]-policy[audit-reports]-rule[0]", "/reports"),
		rbacFilter(t, rbacv3.RBAC_DENY, "ns[default]-policy[deny-admin]-rule[0]", "/admin"))
	cp.setFor(t, m.catalog.node, snapshot{
		listeners: []types.Resource{
			inbound,
			tcpListener(t, "inbound|9000", inTCP, "inbound|9000||"),
		},
		routes: []types.Resource{&routev3.RouteConfiguration{Name: "inbound|8080", VirtualHosts: []*routev3.VirtualHost{{
			Name: "inbound|http|8080", Domains: []string{"*"},
			Routes: []*routev3.Route{{Name: "default", Match: prefixMatch("/"), Action: toCluster("inbound|8080||")}},
		}}}},
		clusters: []types.Resource{
			edsCluster(t, "inbound|8080||", false, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, "inbound|9000||", false, clusterv3.Cluster_ROUND_ROBIN),
		},
		endpoints: []types.Resource{endpoints("inbound|8080||", m.backend.addr()), endpoints("inbound|9000||", echo)},
	})
	for _, p := range []*runningProxy{m.frontend, m.catalog} {
		waitFor(t, p.node+" listeners", func() bool {
			return p.ready(t)
		})
	}
	return m
}

func (p *runningProxy) ready(t testing.TB) bool {
	code, _ := p.get(t, "/ready")
	return code == 200
}

func (m *telemetryMesh) call(t *testing.T, path string, header http.Header) (*http.Response, echoReply) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+m.outHTTP+path, nil)
	req.Host = "catalog:8080"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reply echoReply
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &reply)
	return resp, reply
}

func TestTelemetryMeshCall(t *testing.T) {
	m := newTelemetryMesh(t)

	// A tap on catalog, opened before the request, must see it.
	tapCtx, cancelTap := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelTap()
	tapReq, _ := http.NewRequestWithContext(tapCtx, "GET", "http://"+m.catalog.admin+"/tap?path=/items&method=GET&status=2xx&limit=1", nil)
	tapResp, err := http.DefaultClient.Do(tapReq)
	if err != nil {
		t.Fatal(err)
	}
	defer tapResp.Body.Close()

	resp, reply := m.call(t, "/items/1", nil)
	if resp.StatusCode != 200 || reply.Backend != "catalog-app" {
		t.Fatalf("mesh call: %d from %q", resp.StatusCode, reply.Backend)
	}
	if reply.Header.Get("X-Skein-Peer-Metadata") != "" {
		t.Errorf("the app saw the peer metadata header: %v", reply.Header)
	}
	if resp.Header.Get("X-Skein-Peer-Metadata") != "" {
		t.Errorf("the caller got the peer metadata header back")
	}

	t.Run("tap", func(t *testing.T) {
		line, err := bufio.NewReader(tapResp.Body).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var rec streaminfo.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		got := streaminfo.Record{Proxy: rec.Proxy, Direction: rec.Direction, Method: rec.Method, Path: rec.Path, ResponseCode: rec.ResponseCode, SourceWorkload: rec.SourceWorkload, ResponseFlags: rec.ResponseFlags}
		want := streaminfo.Record{Proxy: "catalog-v1-0.default", Direction: "inbound", Method: "GET", Path: "/items/1", ResponseCode: 200, SourceWorkload: "frontend", ResponseFlags: "-"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tap event (-want +got):\n%s", diff)
		}
	})

	// A call the proxy itself fails: no healthy endpoint in the v9 subset.
	if resp, _ := m.call(t, "/v9", nil); resp.StatusCode != 503 {
		t.Fatalf("/v9: %d, want 503", resp.StatusCode)
	}
	// A call denied by catalog's authorization policy, and an audited one.
	denied, _ := m.call(t, "/admin/keys", nil)
	if body, _ := io.ReadAll(denied.Body); denied.StatusCode != 403 || string(body) != "" && string(body) != "RBAC: access denied" {
		t.Fatalf("/admin/keys: %d %q, want 403 RBAC: access denied", denied.StatusCode, body)
	}
	if resp, _ := m.call(t, "/reports/daily", nil); resp.StatusCode != 200 {
		t.Fatalf("/reports/daily: %d, want 200 (AUDIT does not deny)", resp.StatusCode)
	}

	// A TCP connection through both sidecars.
	conn, err := net.Dial("tcp", m.outTCP)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("hello tcp"))
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(conn); string(got) != "hello tcp" {
		t.Fatalf("tcp echo got %q", got)
	}
	conn.Close()

	common := map[string]string{
		"source_workload": "frontend", "source_workload_namespace": "default", "source_app": "frontend", "source_version": "v1",
		"source_canonical_service": "frontend", "source_principal": "unknown",
		"destination_workload": "catalog-v1", "destination_workload_namespace": "default", "destination_app": "catalog",
		"destination_version": "v1", "destination_canonical_service": "catalog", "destination_principal": "unknown",
		"destination_service": "catalog.default.svc.cluster.local", "destination_service_name": "catalog",
		"destination_service_namespace": "default", "request_protocol": "http", "response_code": "200",
		"grpc_response_status": "", "response_flags": "-",
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	t.Run("metrics", func(t *testing.T) {
		waitFor(t, "tcp close counted", func() bool {
			_, body := m.catalog.get(t, "/stats/prometheus")
			return strings.Contains(body, "istio_tcp_connections_closed_total")
		})
		_, fbody := m.frontend.get(t, "/stats/prometheus")
		_, cbody := m.catalog.get(t, "/stats/prometheus")
		checks := []struct {
			name   string
			body   string
			metric string
			labels map[string]string
			want   float64
		}{
			// /items/1 and the audited /reports/daily.
			{"source reporter", fbody, "istio_requests_total", with(map[string]string{"reporter": "source", "connection_security_policy": "unknown"}), 2},
			{"destination reporter", cbody, "istio_requests_total", with(map[string]string{"reporter": "destination", "connection_security_policy": "none"}), 2},
			{"no healthy upstream", fbody, "istio_requests_total", with(map[string]string{"reporter": "source", "destination_workload": "unknown", "destination_workload_namespace": "unknown",
				"destination_app": "unknown", "destination_version": "unknown", "destination_canonical_service": "unknown",
				"response_code": "503", "response_flags": "UH", "connection_security_policy": "unknown"}), 1},
			// The denied call: the source learns who refused it (metadata exchange
			// runs before authorization, as in Istio), and both sides count a 403.
			{"denied, source reporter", fbody, "istio_requests_total", with(map[string]string{"reporter": "source", "connection_security_policy": "unknown", "response_code": "403"}), 1},
			{"denied, destination reporter", cbody, "istio_requests_total", with(map[string]string{"reporter": "destination", "connection_security_policy": "none", "response_code": "403"}), 1},
			{"tcp source opened", fbody, "istio_tcp_connections_opened_total", map[string]string{"reporter": "source", "source_workload": "frontend",
				"destination_service": "tcp-echo.default.svc.cluster.local", "destination_workload": "unknown", "request_protocol": "tcp", "response_flags": "-"}, 1},
			{"tcp source received", fbody, "istio_tcp_received_bytes_total", map[string]string{"reporter": "source", "request_protocol": "tcp"}, 9},
			{"tcp source sent", fbody, "istio_tcp_sent_bytes_total", map[string]string{"reporter": "source", "request_protocol": "tcp"}, 9},
			{"tcp destination closed", cbody, "istio_tcp_connections_closed_total", map[string]string{"reporter": "destination", "destination_workload": "catalog-v1",
				"source_workload": "unknown", "request_protocol": "tcp", "connection_security_policy": "none"}, 1},
		}
		for _, c := range checks {
			if got := counterValueText(t, c.body, c.metric, c.labels); got != c.want {
				t.Errorf("%s: %s%v = %v, want %v\n%s", c.name, c.metric, c.labels, got, c.want, grep(c.body, c.metric))
			}
		}
		// The TCP families carry no response_code label, as in Istio.
		if strings.Contains(grep(fbody, "istio_tcp_sent_bytes_total{"), "response_code") {
			t.Errorf("tcp metrics carry response_code")
		}
	})

	t.Run("access log", func(t *testing.T) {
		var recs []streaminfo.Record
		waitFor(t, "access log lines", func() bool {
			recs = readAccessLog(t, m.frontendLog)
			return len(recs) >= 3
		})
		byPath := map[string]streaminfo.Record{}
		for _, r := range recs {
			byPath[r.Path+r.Protocol] = r
		}
		ok := byPath["/items/1HTTP/1.1"]
		if ok.ResponseCode != 200 || ok.UpstreamCluster != catalogOut || ok.RouteName != "default" || ok.XRequestID == "" ||
			ok.TraceID == "" || ok.DestinationWorkload != "catalog-v1" || ok.Authority != "catalog:8080" || ok.UpstreamHost == "" {
			t.Errorf("access log line for the mesh call: %+v", ok)
		}
		if uh := byPath["/v9HTTP/1.1"]; uh.ResponseCode != 503 || uh.ResponseFlags != "UH" {
			t.Errorf("access log line for /v9: %+v", uh)
		}
		if tcp := byPath["TCP"]; tcp.BytesReceived != 9 || tcp.BytesSent != 9 || tcp.UpstreamCluster != echoOut {
			t.Errorf("access log line for the TCP connection: %+v", tcp)
		}
		if d := byPath["/admin/keysHTTP/1.1"]; d.ResponseCode != 403 || d.DestinationWorkload != "catalog-v1" {
			t.Errorf("frontend's access log line for the denied call: %+v", d)
		}
		var in []streaminfo.Record
		waitFor(t, "catalog access log lines", func() bool {
			in = readAccessLog(t, m.catalogLog)
			return len(in) >= 3
		})
		inByPath := map[string]streaminfo.Record{}
		for _, r := range in {
			inByPath[r.Path] = r
		}
		if d := inByPath["/admin/keys"]; d.ResponseCode != 403 || d.ResponseCodeDetails != "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]" || d.Audit {
			t.Errorf("catalog's access log line for the denied call: %+v", d)
		}
		if a := inByPath["/reports/daily"]; a.ResponseCode != 200 || !a.Audit || a.AuditPolicy != "ns[default]-policy[audit-reports]-rule[0]" {
			t.Errorf("catalog's access log line for the audited call: %+v", a)
		}
		if a := inByPath["/items/1"]; a.Audit || a.ResponseCodeDetails != "" {
			t.Errorf("catalog's access log line for a plain call: %+v", a)
		}
		if len(in) == 0 || in[0].XRequestID != ok.XRequestID || in[0].SourceWorkload != "frontend" || in[0].Direction != "inbound" {
			t.Errorf("catalog's access log does not show the same request from frontend: %+v", in)
		}
	})

	t.Run("trace", func(t *testing.T) {
		spans, ok := m.receiver.WaitSpans(10*time.Second, func(s []otlp.Span) bool { return len(s) >= 3 })
		if !ok {
			t.Fatalf("spans: %+v", spans)
		}
		var client, server *otlp.Span
		for i, s := range spans {
			if s.Attributes["url.path"] != "/items/1" {
				continue
			}
			switch s.Kind {
			case tracepb.Span_SPAN_KIND_CLIENT:
				client = &spans[i]
			case tracepb.Span_SPAN_KIND_SERVER:
				server = &spans[i]
			}
		}
		if client == nil || server == nil {
			t.Fatalf("want a client and a server span for /items/1: %+v", spans)
		}
		if client.TraceID != server.TraceID || server.ParentSpanID != client.SpanID || client.ParentSpanID != "" {
			t.Errorf("server span not a child of the client span:\nclient %+v\nserver %+v", client, server)
		}
		if client.Service != "frontend.default" || server.Service != "catalog.default" {
			t.Errorf("services %q, %q", client.Service, server.Service)
		}
		if client.Attributes["upstream_cluster"] != catalogOut || client.Attributes["response_flags"] != "-" || client.Name != "catalog:8080/*" {
			t.Errorf("client span attributes: %+v", client)
		}
		// The app got the server span as its parent, in both header formats.
		if tp := reply.Header.Get("Traceparent"); !strings.Contains(tp, server.TraceID+"-"+server.SpanID) {
			t.Errorf("app traceparent %q, want trace %s parent %s", tp, server.TraceID, server.SpanID)
		}
		if reply.Header.Get("X-B3-Spanid") != server.SpanID || reply.Header.Get("X-B3-Traceid") != server.TraceID {
			t.Errorf("app b3 headers %v", reply.Header)
		}
	})

	t.Run("b3 and traceparent parents", func(t *testing.T) {
		const trace = "463ac35c9f6413ad48485a3953bb6124"
		for name, h := range map[string]http.Header{
			"b3 single":   {"B3": {trace + "-0020000000000001-1"}},
			"b3 multi":    {"X-B3-Traceid": {trace}, "X-B3-Spanid": {"0020000000000002"}, "X-B3-Sampled": {"1"}},
			"traceparent": {"Traceparent": {"00-" + trace + "-0020000000000003-01"}},
		} {
			resp, _ := m.call(t, "/parent/"+strings.ReplaceAll(name, " ", "-"), h)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", name, resp.StatusCode)
			}
		}
		spans, ok := m.receiver.WaitSpans(10*time.Second, func(s []otlp.Span) bool {
			n := 0
			for _, sp := range s {
				if sp.TraceID == trace {
					n++
				}
			}
			return n >= 6
		})
		if !ok {
			t.Fatalf("want 6 spans in trace %s: %+v", trace, spans)
		}
		for _, sp := range spans {
			if sp.TraceID == trace && sp.Kind == tracepb.Span_SPAN_KIND_CLIENT && !strings.HasPrefix(sp.ParentSpanID, "002000000000000") {
				t.Errorf("client span %s parent %s, want the caller's span", sp.Attributes["url.path"], sp.ParentSpanID)
			}
		}
	})
}

func readAccessLog(t *testing.T, path string) []streaminfo.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []streaminfo.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r streaminfo.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, line)
		}
		out = append(out, r)
	}
	return out
}

// rbacFilter is an envoy.filters.http.rbac with one policy matching a path prefix
// from anyone, as the translator emits for an AuthorizationPolicy `to.paths: [P*]`.
func rbacFilter(t testing.TB, action rbacv3.RBAC_Action, policy, prefix string) *hcmv3.HttpFilter {
	cfg := &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{policy: {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{
			Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix}}}}}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
	}}}}
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, cfg)}}
}

// withHTTPFilters puts filters before the router of a listener's HCM.
func withHTTPFilters(t testing.TB, l *listenerv3.Listener, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	f := l.FilterChains[0].Filters[0]
	var hcm hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters = append(filters, hcm.HttpFilters...)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcm)}
	return l
}
