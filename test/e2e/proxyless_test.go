package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"skein.dev/skein/internal/echo"
)

// proxylessClientEnv makes the test binary act as a proxyless gRPC client: grpc-go
// reads $GRPC_XDS_BOOTSTRAP once at start-up, so each client is its own process, as
// a user's application would be. The value is a JSON proxylessJob.
const proxylessClientEnv = "SKEIN_E2E_PROXYLESS_CLIENT"

type proxylessJob struct {
	Target   string            `json:"target"`
	Calls    int               `json:"calls"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// proxylessResult counts answers by workload, and errors by gRPC code.
type proxylessResult struct {
	Workloads map[string]int `json:"workloads"`
	Codes     map[string]int `json:"codes"`
	FirstErr  string         `json:"firstErr,omitempty"`
}

func proxylessClientMain() int {
	var job proxylessJob
	if err := json.Unmarshal([]byte(os.Getenv(proxylessClientEnv)), &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	conn, err := grpc.NewClient(job.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for k, v := range job.Metadata {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	res := proxylessResult{Workloads: map[string]int{}, Codes: map[string]int{}}
	for i := 0; i < job.Calls; i++ {
		resp, err := echo.CallGRPC(ctx, conn, map[string]any{"message": "hi"}, grpc.WaitForReady(true))
		res.Codes[status.Code(err).String()]++
		if err != nil {
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		w, _ := resp["workload"].(string)
		res.Workloads[w]++
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// runProxyless runs one proxyless client process with the bootstrap file.
func runProxyless(t *testing.T, bootstrap string, job proxylessJob) proxylessResult {
	t.Helper()
	spec, _ := json.Marshal(job)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), proxylessClientEnv+"="+string(spec), "GRPC_XDS_BOOTSTRAP="+bootstrap)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res proxylessResult
	if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil {
		t.Fatalf("proxyless client %+v: %v %v\n%s\n%s", job, err, jerr, out, tail(stderr.String(), 40))
	}
	if res.FirstErr != "" && stderr.Len() > 0 {
		t.Logf("proxyless client %+v: grpc-go says:\n%s", job, tail(stderr.String(), 40))
	}
	return res
}

// TestProxylessGRPC: real grpc-go clients with their own xDS client (no sidecar),
// bootstrapped by `skein bootstrap --grpc`, dial xds:///catalog... against the control
// plane of `skein up` and get the demo's VirtualService: x-canary: true → v2 only, the
// rest split 90/10 between v1 and v2, straight to the catalog endpoints; a fault rule
// (x-fault: abort) aborts with UNAVAILABLE in the client.
func TestProxylessGRPC(t *testing.T) {
	dir := copyDir(t, demoDir)
	// The demo's routing, with a fault rule first: x-fault: abort is answered
	// UNAVAILABLE by the client itself (grpc-go's fault filter), never reaching catalog.
	routing, err := os.ReadFile(filepath.Join(dir, "catalog-routing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	faultRule := `  http:
  - name: fault
    match:
    - headers:
        x-fault:
          exact: abort
    fault:
      abort:
        grpcStatus: UNAVAILABLE
        percentage: {value: 100}
    route:
    - destination:
        host: catalog
        subset: v1
`
	withFault := strings.Replace(string(routing), "  http:\n", faultRule, 1)
	if withFault == string(routing) {
		t.Fatal("demo routing has no http rules to extend")
	}
	if err := os.WriteFile(filepath.Join(dir, "catalog-routing.yaml"), []byte(withFault), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir)
	boot := filepath.Join(t.TempDir(), "bootstrap.json")
	if out, err := m.skein("bootstrap", "--grpc", "client", "-o", boot); err != nil {
		t.Fatalf("skein bootstrap: %v\n%s", err, out)
	}
	const target = "xds:///catalog.default.svc.cluster.local:9090"

	const n = 300
	split := runProxyless(t, boot, proxylessJob{Target: target, Calls: n})
	t.Logf("90/10 split over %d proxyless RPCs: %v", n, split.Workloads)
	// 90/10 of 300: v2 expects 30 (sd ≈ 5.2); the bounds are ±3.5 sd.
	if split.Codes["OK"] != n || split.Workloads["catalog-v1"]+split.Workloads["catalog-v2"] != n ||
		split.Workloads["catalog-v2"] < 12 || split.Workloads["catalog-v2"] > 48 {
		t.Errorf("weighted split 90/10 over %d RPCs: %+v\n%s", n, split, m.logs())
	}

	canary := runProxyless(t, boot, proxylessJob{Target: target, Calls: 50, Metadata: map[string]string{"x-canary": "true"}})
	if canary.Workloads["catalog-v2"] != 50 {
		t.Errorf("x-canary: true: %+v, want catalog-v2 only", canary)
	}

	fault := runProxyless(t, boot, proxylessJob{Target: target, Calls: 20, Metadata: map[string]string{"x-fault": "abort"}})
	if fault.Codes["Unavailable"] != 20 || len(fault.Workloads) != 0 {
		t.Errorf("x-fault: abort: %+v, want 20 × Unavailable from the client's fault filter", fault)
	}

	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range st.Proxies {
		ids = append(ids, p.ID)
	}
	if !strings.Contains(strings.Join(ids, " "), "client-grpc-") {
		t.Errorf("the proxyless client is not in skein status: %v", ids)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
