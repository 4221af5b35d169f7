package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// scopeSidecar scopes the demo's client workload to nothing declared, inferring from
// traffic or not.
func scopeSidecar(infer bool) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: client
  namespace: default
  annotations:
    scope.skein.dev/infer-from-traffic: "%t"
spec:
  workloadSelector:
    labels: {app: client}
  egress:
  - hosts: ["~/*"]
`, infer)
}

// TestScopeInferredFromTrafficUp runs `skein up` (separate sidecar processes) with the
// client workload scoped to nothing: its calls to catalog get "no route" (404); once
// the Sidecar infers scope from traffic (a live edit), the first call's request is held
// while the control plane adds catalog to the client's scope, and every call succeeds.
func TestScopeInferredFromTrafficUp(t *testing.T) {
	dir := copyDir(t, demoDir)
	file := filepath.Join(dir, "scope.yaml")
	writeFile(t, file, scopeSidecar(false))
	m := startMesh(t, dir)

	s := m.call("client", "http://catalog:8080/", "-n", "5", "-c", "1")
	if s.Status[404] != 5 {
		t.Fatalf("scoped to nothing without inference: want 5 × 404 (no route), got %+v", s)
	}

	writeFile(t, file, scopeSidecar(true))
	// The client's sidecar, told inference is off, does not ask again for 10 s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Each attempt is a fresh client process: its first request may be the one
		// that asks for catalog.
		s = m.call("client", "http://catalog:8080/", "-n", "20", "-c", "2")
		if s.Status[200] == 20 {
			break
		}
		if s.Status[404] == 0 || time.Now().After(deadline) {
			t.Fatalf("with inference: want 20 × 200, got %+v\n%s", s, m.logs())
		}
		time.Sleep(200 * time.Millisecond) // the edit is not loaded yet
	}
}
