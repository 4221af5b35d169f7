package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const demoDir = "../../examples/demo"

// share returns the percentage of successful requests served by backend.
func share(s callSummary, backend string) float64 {
	return 100 * float64(s.Backends[backend]) / float64(max(s.Requests, 1))
}

func TestCanaryThroughSidecars(t *testing.T) {
	checkCanary(t, startMesh(t, copyDir(t, demoDir)))
}

// TestCanaryThroughSidecarsNetns is the same test with every replica a pod: the client
// (`skein call`, no HTTP_PROXY) calls http://catalog:8080/ as an unmodified app would,
// and the capture rules, DNS proxy and sidecars do the rest.
func TestCanaryThroughSidecarsNetns(t *testing.T) {
	checkCanary(t, startMeshWith(t, copyDir(t, demoDir), "netns"))
}

func checkCanary(t *testing.T, m *mesh) {
	t.Helper()
	s := m.call("client", "http://catalog:8080/", "-n", "1000", "-c", "8")
	if s.Status[200] != 1000 {
		t.Fatalf("want 1000 answers 200, got %+v\n%s", s, m.logs())
	}
	v1, v2 := share(s, "catalog-v1"), share(s, "catalog-v2")
	t.Logf("split over 1000 requests: v1 %.1f%%, v2 %.1f%%", v1, v2)
	if math.Abs(v1-90) > 3 || math.Abs(v2-10) > 3 {
		t.Errorf("split v1 %.1f%% v2 %.1f%%, want 90/10 within ±3 points", v1, v2)
	}

	s = m.call("client", "http://catalog:8080/", "-n", "200", "-c", "4", "-H", "x-canary: true")
	if s.Backends["catalog-v2"] != 200 {
		t.Errorf("with x-canary: true want all 200 on catalog-v2, got %+v", s)
	}
}

// TestLiveEdit edits the VirtualService while load runs: the split moves without a
// failed request; then an invalid edit is rejected and the previous split keeps serving.
func TestLiveEdit(t *testing.T) {
	dir := copyDir(t, demoDir)
	m := startMesh(t, dir)
	vsFile := findFileWith(t, dir, "kind: VirtualService")
	// Background load for the whole edit: about 20 s of requests, none may fail.
	var wg sync.WaitGroup
	var bg callSummary
	wg.Add(1)
	go func() {
		defer wg.Done()
		bg = m.call("client", "http://catalog:8080/", "-n", "2000", "-c", "2", "--interval", "20ms")
	}()
	time.Sleep(2 * time.Second)

	edited := canaryVS(10, 90, "")
	writeFile(t, vsFile, edited)
	edit := time.Now()
	var moved time.Duration
	for time.Since(edit) < 15*time.Second {
		s := m.call("client", "http://catalog:8080/", "-n", "100", "-c", "4")
		if share(s, "catalog-v2") > 60 {
			moved = time.Since(edit)
			break
		}
	}
	if moved == 0 {
		t.Fatalf("split did not move within 15s of the edit\n%s", m.out.String())
	}
	t.Logf("split moved %v after the edit (includes one 100-request probe)", moved.Round(time.Millisecond))

	// An invalid edit: an unknown field. It must be reported with file:line and field,
	// and the edited (valid) split must keep serving.
	bad := canaryVS(50, 50, "    bogusField: 1\n")
	writeFile(t, vsFile, bad)
	var st = waitStatus(t, m, 10*time.Second, func(st statusView) bool { return len(st.ConfigErrors) > 0 })
	msg := strings.Join(st.ConfigErrors, "\n")
	if !strings.Contains(msg, filepath.Base(vsFile)+":") || !strings.Contains(msg, "bogusField") {
		t.Errorf("config error should name the file, line and field; got:\n%s", msg)
	}
	out, _ := m.skein("status")
	if !strings.Contains(out, "bogusField") {
		t.Errorf("skein status does not show the rejected edit:\n%s", out)
	}
	s := m.call("client", "http://catalog:8080/", "-n", "300", "-c", "4")
	if share(s, "catalog-v2") < 75 {
		t.Errorf("after a rejected edit the previous split (v2 90%%) must keep serving; got %+v", s.Backends)
	}
	wg.Wait()
	if bg.Requests != 2000 || bg.Status[200] != 2000 {
		t.Errorf("background load during the edits: want 2000 × 200, got %+v", bg)
	}
}

type statusView struct {
	ConfigErrors []string `json:"configErrors"`
}

func waitStatus(t *testing.T, m *mesh, limit time.Duration, ok func(statusView) bool) statusView {
	t.Helper()
	deadline := time.Now().Add(limit)
	var st statusView
	for time.Now().Before(deadline) {
		out, _ := m.skein("status", "-o", "json")
		st = statusView{}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err == nil && ok(st) {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("status condition not met within %v: %+v", limit, st)
	return st
}

func findFileWith(t *testing.T, dir, needle string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), needle) {
			return f
		}
	}
	t.Fatalf("no file in %s contains %q", dir, needle)
	return ""
}

// writeFile replaces a file the way an editor saving in place does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// canaryVS renders the demo's catalog routing file (DestinationRule and VirtualService)
// with the given weights; extra is inserted into the second rule (an invalid edit).
func canaryVS(v1, v2 int, extra string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: default}
spec:
  host: catalog
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: catalog
  namespace: default
spec:
  hosts: [catalog]
  http:
  - name: canary-header
    match:
    - headers:
        x-canary: {exact: "true"}
    route:
    - destination: {host: catalog, subset: v2}
  - name: split
%s    route:
    - destination: {host: catalog, subset: v1}
      weight: %d
    - destination: {host: catalog, subset: v2}
      weight: %d
`, extra, v1, v2)
}
