package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"skein.dev/skein/internal/observe"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/testutil/otlp"
)

// TestObservability runs the demo with tracing to a real OTLP/gRPC receiver and checks
// the whole chain: one trace across frontend → catalog → inventory with parent links,
// skein tap seeing a request made during the test, skein stat and skein explain.
func TestObservability(t *testing.T) {
	receiver := otlp.Start(t)
	m := startMesh(t, copyDir(t, demoDir), "--tracing-exporter", "otlp-grpc", "--tracing-endpoint", receiver.Addr, "--tracing-sampling", "100")

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
			return services["inventory.default/SPAN_KIND_SERVER"] && services["catalog.default/SPAN_KIND_CLIENT"]
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
	})
}
