package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"skein.dev/skein/internal/api"

	"skein.dev/skein/internal/observe"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/testutil/otlp"
)

// TestObservability runs the demo with tracing to a real OTLP/gRPC receiver and checks
// the whole chain: one trace across frontend → catalog → inventory with parent links,
// skein tap seeing a request made during the test, skein stat and skein explain.
func TestObservability(t *testing.T) {
	receiver := otlp.Start(t)
	dir := copyDir(t, demoDir)
	// catalog never serves /admin/*; calls to /reports/* are audited.
	if err := os.WriteFile(filepath.Join(dir, "catalog-authz.yaml"), []byte(catalogAuthz), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir, "--tracing-exporter", "otlp-grpc", "--tracing-endpoint", receiver.Addr, "--tracing-sampling", "100")

	t.Run("trace spans the call chain", func(t *testing.T) {
		s := m.call("client", "http://frontend:8080/trace-me", "-n", "1")
		if s.Status[200] != 1 {
			t.Fatalf("call: %+v\n%s", s, m.logs())
		}
		var root otlp.Span
		spans, ok := receiver.WaitSpans(30*time.Second, func(all []otlp.Span) bool {
			for _, sp := range all {
				if sp.Attributes["url.path"] == "/trace-me" && sp.ParentSpanID == "" {
					root = sp
				}
			}
			if root.TraceID == "" {
				return false
			}
			services := map[string]bool{}
			for _, sp := range receiver.Trace(root.TraceID) {
				services[sp.Service+"/"+sp.Kind.String()] = true
			}
			// Every hop's spans, which sidecars export in their own batches.
			for _, want := range []string{"client.default/SPAN_KIND_CLIENT", "frontend.default/SPAN_KIND_SERVER", "frontend.default/SPAN_KIND_CLIENT",
				"catalog.default/SPAN_KIND_SERVER", "catalog.default/SPAN_KIND_CLIENT", "inventory.default/SPAN_KIND_SERVER"} {
				if !services[want] {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("no complete trace for /trace-me (root %+v); %d spans received", root, len(spans))
		}
		trace := receiver.Trace(root.TraceID)
		byID := map[string]otlp.Span{}
		for _, sp := range trace {
			byID[sp.SpanID] = sp
		}
		// Every hop's span hangs off the previous hop's: walk up from inventory.
		var chain []string
		for _, sp := range trace {
			if sp.Service == "inventory.default" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
				for cur, ok := sp, true; ok; cur, ok = byID[cur.ParentSpanID] {
					chain = append([]string{cur.Service + ":" + strings.TrimPrefix(cur.Kind.String(), "SPAN_KIND_")}, chain...)
				}
			}
		}
		want := "client.default:CLIENT frontend.default:SERVER frontend.default:CLIENT catalog.default:SERVER catalog.default:CLIENT inventory.default:SERVER"
		if got := strings.Join(chain, " "); got != want {
			t.Errorf("parent chain from inventory up:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("tap sees a request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		tap := exec.CommandContext(ctx, skeinBin, "tap", "frontend", "--state-dir", m.stateDir, "--path", "/tapped", "--direction", "inbound", "--max-requests", "1", "-o", "json")
		var out syncBuffer
		tap.Stdout, tap.Stderr = &out, &out
		if err := tap.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- tap.Wait() }()
		var err error
	loop:
		for {
			m.call("client", "http://frontend:8080/tapped", "-n", "1")
			select {
			case err = <-done:
				break loop
			case <-time.After(500 * time.Millisecond):
			}
		}
		if err != nil {
			t.Fatalf("skein tap: %v\n%s", err, out.String())
		}
		var rec streaminfo.Record
		if err := json.Unmarshal([]byte(jsonLine(out.String())), &rec); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if rec.Path != "/tapped" || rec.SourceWorkload != "client" || rec.DestinationWorkload != "frontend" || rec.ResponseCode != 200 || rec.TraceID == "" {
			t.Errorf("tapped %+v", rec)
		}
	})

	t.Run("stat", func(t *testing.T) {
		out, err := m.skein("stat", "-w", "3s", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var res observe.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		found := false
		for _, r := range res.Workloads {
			if r.Name == "frontend" {
				found = true
				// The demo's load sends 5 requests a second.
				if r.RPS < 2 || r.RPS > 10 || r.SuccessRate < 0.99 || r.P99 <= 0 {
					t.Errorf("frontend stats %+v", r.Stats)
				}
			}
		}
		if !found {
			t.Errorf("no frontend row: %s", out)
		}
	})

	t.Run("explain", func(t *testing.T) {
		out, err := m.skein("explain", "frontend", "http://catalog:8080/", "-H", "x-canary: true")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"* canary", "MATCHED", "outbound|8080|v2|catalog.default.svc.cluster.local", "healthy", "forwarded upstream"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain output lacks %q:\n%s", want, out)
			}
		}
		out, _ = m.skein("explain", "frontend", "http://nosuch:8080/")
		if !strings.Contains(out, "404 NR") {
			t.Errorf("explain of an unknown host:\n%s", out)
		}
		// Denied at catalog's sidecar: explain asks it (as a connection from client's
		// sidecar over mTLS) and names the policy and rule.
		out, err = m.skein("explain", "client", "http://catalog:8080/admin/keys")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"at the destination: catalog-v", "over mTLS as spiffe://cluster.local/ns/default/sa/client",
			"DENIED: DENY policy ns[default]-policy[deny-admin]-rule[0] matched", `call outcome:  403 -: "RBAC: access denied"`} {
			if !strings.Contains(out, want) {
				t.Errorf("explain of a denied request lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("denied call", func(t *testing.T) {
		s := m.call("client", "http://catalog:8080/admin/keys", "-n", "1")
		if s.Status[403] != 1 {
			t.Fatalf("call to /admin/keys: %+v, want one 403", s)
		}
		if s := m.call("client", "http://catalog:8080/reports/daily", "-n", "1"); s.Status[200] != 1 {
			t.Fatalf("call to /reports/daily: %+v, want one 200 (AUDIT does not deny)", s)
		}
		st, err := m.status()
		if err != nil {
			t.Fatal(err)
		}
		// Both sides count the 403 with the peers' workloads and SPIFFE principals,
		// parsed with the Prometheus text parser.
		var client, catalog []api.Replica
		for _, w := range st.Workloads {
			switch w.Name {
			case "client":
				client = append(client, w.Replicas...)
			case "catalog-v1", "catalog-v2":
				catalog = append(catalog, w.Replicas...)
			}
		}
		want := map[string]string{"response_code": "403", "response_flags": "-", "request_protocol": "http",
			"source_workload": "client", "source_workload_namespace": "default", "source_principal": "spiffe://cluster.local/ns/default/sa/client",
			"destination_service": "catalog.default.svc.cluster.local", "destination_principal": "spiffe://cluster.local/ns/default/sa/catalog",
			"destination_workload_namespace": "default", "destination_app": "catalog", "connection_security_policy": "mutual_tls"}
		with := func(k, v string) map[string]string {
			out := map[string]string{k: v}
			for kk, vv := range want {
				out[kk] = vv
			}
			return out
		}
		// The source reporter knows the destination workload only because the 403
		// carried catalog's metadata; like Istio's, it reports the security policy as
		// "unknown".
		srcLabels := with("reporter", "source")
		srcLabels["connection_security_policy"] = "unknown"
		var src, dst float64
		for _, r := range client {
			src += promCounter(t, r.Metrics, "istio_requests_total", srcLabels)
		}
		for _, r := range catalog {
			dst += promCounter(t, r.Metrics, "istio_requests_total", with("reporter", "destination"))
		}
		// Sidecars write access logs in batches every 100 ms: poll the catalog
		// replicas' logs together until both lines are there (or 10 s passed).
		var auditLines, deniedLines int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			auditLines, deniedLines = 0, 0
			for _, r := range catalog {
				data, _ := os.ReadFile(r.AccessLog)
				for _, line := range strings.Split(string(data), "\n") {
					var rec streaminfo.Record
					if json.Unmarshal([]byte(line), &rec) != nil {
						continue
					}
					if rec.Path == "/reports/daily" && rec.Audit && rec.AuditPolicy == "ns[default]-policy[audit-reports]-rule[0]" {
						auditLines++
					}
					if rec.Path == "/admin/keys" && rec.ResponseCode == 403 && strings.Contains(rec.ResponseCodeDetails, "deny-admin") {
						deniedLines++
					}
				}
			}
			if (auditLines >= 1 && deniedLines >= 1) || time.Now().After(deadline) {
				break
			}
		}
		if src != 1 || dst != 1 {
			var lines []string
			for _, r := range append(client, catalog...) {
				resp, err := http.Get("http://" + r.Metrics + "/stats/prometheus")
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(body), "\n") {
					if strings.Contains(l, `response_code="403"`) && strings.HasPrefix(l, "istio_requests_total") {
						lines = append(lines, l)
					}
				}
			}
			t.Errorf("denied call counted %v at the source and %v at the destination, want 1 and 1 with %v\n%s", src, dst, want, strings.Join(lines, "\n"))
		}
		if auditLines != 1 || deniedLines != 1 {
			t.Errorf("catalog access logs: %d audited /reports/daily lines, %d denied /admin/keys lines; want 1 and 1", auditLines, deniedLines)
		}
	})
}

const catalogAuthz = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector:
    matchLabels: {app: catalog}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-reports, namespace: default}
spec:
  selector:
    matchLabels: {app: catalog}
  action: AUDIT
  rules:
  - to:
    - operation:
        paths: ["/reports/*"]
`

// promCounter parses a sidecar's /stats/prometheus with the Prometheus text parser
// and sums the counter's samples that carry every given label value.
func promCounter(t *testing.T, addr, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if match {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
