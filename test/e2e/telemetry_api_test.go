package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/testutil/otlp"
)

// telemetryConfig: tracing off mesh-wide but on for client, the principals dropped
// from every metric, and no access log in namespace default except for web.
const telemetryConfig = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 0}]
  metrics:
  - overrides:
    - tagOverrides:
        source_principal: {operation: REMOVE}
        destination_principal: {operation: REMOVE}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: client-traces, namespace: default}
spec:
  selector: {matchLabels: {app: client}}
  tracing: [{randomSamplingPercentage: 100}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: no-access-log, namespace: default}
spec:
  accessLogging: [{disabled: true}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: web-logs, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  accessLogging: [{disabled: false}]
`

// TestTelemetryAPI: Istio's Telemetry kind sets the sidecars' trace sampling, access
// logging and metric labels with Istio's hierarchy, and an edit applies to the
// sidecars it concerns.
func TestTelemetryAPI(t *testing.T) {
	receiver := otlp.Start(t)
	dir := securityDir(t)
	writeFile(t, filepath.Join(dir, "telemetry.yaml"), telemetryConfig)
	m := startMesh(t, dir, "--tracing-exporter", "otlp-grpc", "--tracing-endpoint", receiver.Addr, "--tracing-sampling", "100")
	replica := func(name string) api.Replica {
		st, err := m.status()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range st.Workloads {
			if w.Name == name && len(w.Replicas) > 0 {
				return w.Replicas[0]
			}
		}
		t.Fatalf("no replica of %s", name)
		return api.Replica{}
	}

	t.Run("access logging", func(t *testing.T) {
		if r := replica("client"); r.AccessLog != "" {
			t.Errorf("client writes an access log (%s); its namespace's Telemetry disables it", r.AccessLog)
		}
		if r := replica("web"); r.AccessLog == "" {
			t.Errorf("web has no access log; its workload Telemetry enables it")
		}
	})

	t.Run("sampling per workload", func(t *testing.T) {
		// tcp-echo's sidecar samples nothing (mesh-wide 0%); client's samples all.
		env := m.execEnv("tcp-echo")
		if code, _, err := viaSidecar(env, "http://web:8080/unsampled"); err != nil || code != 200 {
			t.Fatalf("tcp-echo -> web: %d %v", code, err)
		}
		if s := m.call("client", "http://web:8080/sampled", "-n", "1"); s.Status[200] != 1 {
			t.Fatalf("client -> web: %+v", s)
		}
		spans, ok := receiver.WaitSpans(20*time.Second, func(all []otlp.Span) bool {
			n := 0
			for _, sp := range all {
				if sp.Attributes["url.path"] == "/sampled" {
					n++
				}
			}
			return n >= 2 // client's client span and web's server span
		})
		if !ok {
			t.Fatalf("no spans for /sampled: %d spans", len(spans))
		}
		time.Sleep(500 * time.Millisecond) // a batch in flight
		for _, sp := range receiver.Spans() {
			if sp.Attributes["url.path"] == "/unsampled" {
				t.Errorf("a span for /unsampled was exported by %s: mesh-wide sampling is 0%%", sp.Service)
			}
		}
	})

	t.Run("metric labels removed", func(t *testing.T) {
		for _, name := range []string{"web", "client"} {
			labels := metricLabels(t, replica(name).Metrics, "istio_requests_total")
			if len(labels) == 0 {
				t.Fatalf("%s: no istio_requests_total", name)
			}
			for _, l := range []string{"source_principal", "destination_principal"} {
				if labels[l] {
					t.Errorf("%s's istio_requests_total still has %s", name, l)
				}
			}
			if !labels["source_workload"] {
				t.Errorf("%s: source_workload was removed too", name)
			}
		}
	})

	t.Run("an edit applies", func(t *testing.T) {
		m.applyAndWait(filepath.Join(dir, "telemetry.yaml"), strings.Replace(telemetryConfig, "  accessLogging: [{disabled: false}]", "  accessLogging: [{disabled: true}]", 1))
		deadline := time.Now().Add(30 * time.Second)
		for replica("web").AccessLog != "" {
			if time.Now().After(deadline) {
				t.Fatalf("web still logs after its Telemetry disabled access logging")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// metricLabels parses a sidecar's metrics with the Prometheus text parser and returns
// the label names of a family.
func metricLabels(t *testing.T, addr, family string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range families[family].GetMetric() {
		for _, l := range m.GetLabel() {
			out[l.GetName()] = true
		}
	}
	return out
}
