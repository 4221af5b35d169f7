package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers
	"google.golang.org/protobuf/types/known/emptypb"

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
	// RequestIDs gives each call its own x-request-id with this prefix (the echo's
	// ledger counts attempts per id).
	RequestIDs string `json:"requestIDs,omitempty"`
	// Method, when set, is invoked with an empty message instead of echo's.
	Method string `json:"method,omitempty"`
	// Session, in the environment only, makes the process read jobs from stdin
	// (proxylessSessionMain) instead of running this one.
	Session bool `json:"session,omitempty"`
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
	if job.Session {
		return proxylessSessionMain()
	}
	conn, err := grpc.NewClient(job.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer conn.Close()
	_ = json.NewEncoder(os.Stdout).Encode(runProxylessJob(conn, job))
	return 0
}

// proxylessSessionMain serves jobs read from stdin, one JSON line each, answering
// one result line each, on one ClientConn per target kept for the whole process: the
// client follows config changes without a restart, as a long-running app does.
func proxylessSessionMain() int {
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var job proxylessJob
		if err := json.Unmarshal(in.Bytes(), &job); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		conn := conns[job.Target]
		if conn == nil {
			var err error
			if conn, err = grpc.NewClient(job.Target, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			conns[job.Target] = conn
		}
		if err := out.Encode(runProxylessJob(conn, job)); err != nil {
			return 2
		}
	}
	return 0
}

// runProxylessJob makes the job's calls on conn and counts the answers.
func runProxylessJob(conn *grpc.ClientConn, job proxylessJob) proxylessResult {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for k, v := range job.Metadata {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	res := proxylessResult{Workloads: map[string]int{}, Codes: map[string]int{}}
	for i := 0; i < job.Calls; i++ {
		cctx := ctx
		if job.RequestIDs != "" {
			cctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", fmt.Sprintf("%s-%d", job.RequestIDs, i))
		}
		if job.Method != "" {
			err := conn.Invoke(cctx, job.Method, &emptypb.Empty{}, &emptypb.Empty{}, grpc.WaitForReady(true))
			res.Codes[status.Code(err).String()]++
			if err != nil && res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		resp, err := echo.CallGRPC(cctx, conn, map[string]any{"message": "hi"}, grpc.WaitForReady(true))
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
	return res
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
	retrySrv := startRetryServer(t)
	writeFile(t, filepath.Join(dir, "retry-entry.yaml"), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: retry}
spec:
  hosts: [retry.example.com]
  ports: [{number: 9090, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {grpc: %d}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: retry}
spec:
  hosts: [retry.example.com]
  http:
  - match: [{headers: {x-retry: {exact: "yes"}}}]
    retries: {attempts: 3, retryOn: unavailable}
    route: [{destination: {host: retry.example.com}}]
  - retries: {attempts: 0}
    route: [{destination: {host: retry.example.com}}]
`, retrySrv.port))
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

	// Retries from the VirtualService, by gRPC status, against a native gRPC server
	// declared by a ServiceEntry: it fails the first x-fail attempts of each request id
	// with a trailers-only UNAVAILABLE (grpc-go retries only those, gRFC A6; skein
	// echo serves gRPC through net/http, whose errors come as headers then trailers).
	const retryTarget = "xds:///retry.example.com:9090"
	retried := runProxyless(t, boot, proxylessJob{Target: retryTarget, Calls: 10, RequestIDs: "retry", Method: retryMethod,
		Metadata: map[string]string{"x-retry": "yes", "x-fail": "2"}})
	if retried.Codes["OK"] != 10 || retrySrv.attempts("retry-0") != 3 {
		t.Errorf("retries {attempts: 3, retryOn: unavailable} with 2 failing attempts: %+v (%d attempts of retry-0), want 10 × OK after 3 attempts", retried, retrySrv.attempts("retry-0"))
	}
	unretried := runProxyless(t, boot, proxylessJob{Target: retryTarget, Calls: 10, RequestIDs: "noretry", Method: retryMethod,
		Metadata: map[string]string{"x-fail": "1"}})
	if unretried.Codes["Unavailable"] != 10 || retrySrv.attempts("noretry-0") != 1 {
		t.Errorf("retries {attempts: 0} with a failing attempt: %+v, want 10 × Unavailable after 1 attempt", unretried)
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

// retryMethod is the method of the retry server (any method is served).
const retryMethod = "/skein.test.Retry/Call"

// retryServer is a native gRPC server (not through net/http) counting attempts per
// x-request-id and failing the first x-fail of them with UNAVAILABLE.
type retryServer struct {
	port int
	mu   sync.Mutex
	seen map[string]int
}

func (s *retryServer) attempts(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

func startRetryServer(t *testing.T) *retryServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &retryServer{port: ln.Addr().(*net.TCPAddr).Port, seen: map[string]int{}}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(stream.Context())
		first := func(k string) string {
			if v := md.Get(k); len(v) > 0 {
				return v[0]
			}
			return ""
		}
		s.mu.Lock()
		s.seen[first("x-request-id")]++
		n := s.seen[first("x-request-id")]
		s.mu.Unlock()
		if fail, _ := strconv.Atoi(first("x-fail")); n <= fail {
			return status.Errorf(codes.Unavailable, "failing attempt %d", n)
		}
		return stream.SendMsg(&emptypb.Empty{})
	}))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return s
}
