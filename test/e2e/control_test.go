package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/echo"
)

// controlPlane is a running `skein control`: the control plane alone, no workloads.
type controlPlane struct {
	t        *testing.T
	cmd      *exec.Cmd
	out      *syncBuffer
	xds, api string
}

var controlAddrs = regexp.MustCompile(`skein control: config \S+, xDS (\S+), API (\S+),`)

// startControl runs `skein control dir` on loopback ports it picks itself and waits
// for the line saying where it serves.
func startControl(t *testing.T, dir string, args ...string) *controlPlane {
	t.Helper()
	c := &controlPlane{t: t, out: &syncBuffer{}}
	c.cmd = exec.Command(skeinBin, append([]string{"control", dir,
		"--xds-address", "127.0.0.1:0", "--api-address", "127.0.0.1:0", "--monitoring-address", "",
		"--ca-dir", t.TempDir()}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := controlAddrs.FindStringSubmatch(c.out.String()); m != nil {
			c.xds, c.api = m[1], m[2]
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("skein control did not start within 15s:\n%s", c.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop interrupts skein control as Ctrl-C would; it must exit cleanly.
func (c *controlPlane) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("skein control exited with %v\n%s", err, c.out.String())
		}
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		c.t.Errorf("skein control did not stop within 10s after SIGINT\n%s", c.out.String())
	}
}

func (c *controlPlane) status() (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return api.NewClient(c.api).Status(ctx)
}

// skeinCmd runs the skein binary and returns its combined output.
func skeinCmd(args ...string) (string, error) {
	out, err := exec.Command(skeinBin, args...).CombinedOutput()
	return string(out), err
}

// proxylessSession is one long-running proxyless gRPC client process (see
// proxylessSessionMain): every job runs on the same ClientConn, so it sees config
// changes the way a running application does.
type proxylessSession struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *syncBuffer
}

func startProxylessSession(t *testing.T, bootstrap string) *proxylessSession {
	t.Helper()
	spec, _ := json.Marshal(proxylessJob{Session: true})
	s := &proxylessSession{t: t, stderr: &syncBuffer{}}
	s.cmd = exec.Command(os.Args[0], "-test.run=^$")
	s.cmd.Env = append(os.Environ(), proxylessClientEnv+"="+string(spec), "GRPC_XDS_BOOTSTRAP="+bootstrap)
	s.cmd.Stderr = s.stderr
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.out = bufio.NewScanner(stdout)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.in.Close() // end of jobs: the client exits
		done := make(chan error, 1)
		go func() { done <- s.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	})
	return s
}

func (s *proxylessSession) run(job proxylessJob) proxylessResult {
	s.t.Helper()
	line, _ := json.Marshal(job)
	if _, err := s.in.Write(append(line, '\n')); err != nil {
		s.t.Fatalf("proxyless session: %v\n%s", err, tail(s.stderr.String(), 40))
	}
	if !s.out.Scan() {
		s.t.Fatalf("proxyless session ended: %v\n%s", s.out.Err(), tail(s.stderr.String(), 40))
	}
	var res proxylessResult
	if err := json.Unmarshal(s.out.Bytes(), &res); err != nil {
		s.t.Fatalf("proxyless session: %v: %s", err, s.out.Bytes())
	}
	return res
}

// startEchoBackend serves skein echo (HTTP, h2c and gRPC) in this process on a
// loopback port, answering as workload; it returns the port.
func startEchoBackend(t *testing.T, workload string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = echo.Serve(ctx, ln, echo.Options{Identity: echo.Identity{Workload: workload, Namespace: "default"}, ShutdownGrace: 200 * time.Millisecond})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

// controlRouting is catalog's VirtualService: an abort rule, a header rule and a
// weighted default; canary and weights are what the live edit changes.
func controlRouting(canarySubset string, v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - name: fault
    match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: catalog, subset: v1}}]
  - name: canary
    match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: catalog, subset: %s}}]
  - name: split
    route:
    - {destination: {host: catalog, subset: v1}, weight: %d}
    - {destination: {host: catalog, subset: v2}, weight: %d}
`, canarySubset, v1, v2)
}

// TestProxylessGRPCAgainstControl: `skein control` alone (no skein up, no sidecar)
// serves real grpc-go xDS clients, bootstrapped by `skein bootstrap --grpc
// --xds-address`, from a folder where the backends are WorkloadEntries: servers this
// test runs on loopback. The clients get the 90/10 split, header routing, fault
// aborts and retries (counted at the backend) of the VirtualServices; a live edit is
// followed by a running client without restart, and an invalid edit is rejected with
// file:line while the previous split keeps serving.
func TestProxylessGRPCAgainstControl(t *testing.T) {
	v1 := startEchoBackend(t, "catalog-v1")
	v2 := startEchoBackend(t, "catalog-v2")
	retrySrv := startRetryServer(t)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "catalog.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: catalog}
spec:
  selector: {app: catalog}
  ports: [{name: grpc, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v1}
spec:
  address: 127.0.0.1
  ports: {grpc: %d}
  labels: {app: catalog, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v2}
spec:
  address: 127.0.0.1
  ports: {grpc: %d}
  labels: {app: catalog, version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog}
spec:
  host: catalog
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, v1, v2))
	routing := filepath.Join(dir, "catalog-routing.yaml")
	writeFile(t, routing, controlRouting("v2", 90, 10))
	// The retry server is selected by a ServiceEntry's workloadSelector.
	writeFile(t, filepath.Join(dir, "retry.yaml"), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: retry}
spec:
  hosts: [retry.example.com]
  location: MESH_INTERNAL
  ports: [{number: 9090, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: retry}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: retry}
spec:
  address: 127.0.0.1
  ports: {grpc: %d}
  labels: {app: retry}
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

	cp := startControl(t, dir)
	boot := filepath.Join(t.TempDir(), "bootstrap.json")
	// No skein up anywhere: --state-dir points at an empty folder on purpose.
	if out, err := skeinCmd("bootstrap", "--grpc", "client", "--xds-address", cp.xds, "--state-dir", t.TempDir(), "-o", boot); err != nil {
		t.Fatalf("skein bootstrap: %v\n%s", err, out)
	}
	const target = "xds:///catalog.default.svc.cluster.local:9090"
	client := startProxylessSession(t, boot)

	const n = 300
	split := client.run(proxylessJob{Target: target, Calls: n})
	t.Logf("90/10 split over %d proxyless RPCs: %v", n, split.Workloads)
	// 90/10 of 300: v2 expects 30 (sd ≈ 5.2); the bounds are ±3.5 sd.
	if split.Codes["OK"] != n || split.Workloads["catalog-v1"]+split.Workloads["catalog-v2"] != n ||
		split.Workloads["catalog-v2"] < 12 || split.Workloads["catalog-v2"] > 48 {
		t.Fatalf("weighted split 90/10 over %d RPCs: %+v\n%s", n, split, cp.out.String())
	}

	if canary := client.run(proxylessJob{Target: target, Calls: 50, Metadata: map[string]string{"x-canary": "true"}}); canary.Workloads["catalog-v2"] != 50 {
		t.Errorf("x-canary: true: %+v, want catalog-v2 only", canary)
	}
	if fault := client.run(proxylessJob{Target: target, Calls: 20, Metadata: map[string]string{"x-fault": "abort"}}); fault.Codes["Unavailable"] != 20 || len(fault.Workloads) != 0 {
		t.Errorf("x-fault: abort: %+v, want 20 × Unavailable from the client's fault filter", fault)
	}

	// Retries from the VirtualService, counted at the backend: the first x-fail
	// attempts of each request id fail with UNAVAILABLE. The same process dials a
	// second target: grpc-go opens a second ADS stream with the same node id, and the
	// first target must keep following config changes (checked by the edits below).
	const retryTarget = "xds:///retry.example.com:9090"
	retried := client.run(proxylessJob{Target: retryTarget, Calls: 10, RequestIDs: "retry", Method: retryMethod,
		Metadata: map[string]string{"x-retry": "yes", "x-fail": "2"}})
	if retried.Codes["OK"] != 10 || retrySrv.attempts("retry-0") != 3 || retrySrv.attempts("retry-9") != 3 {
		t.Errorf("retries {attempts: 3, retryOn: unavailable} with 2 failing attempts: %+v (%d attempts of retry-0), want 10 × OK after 3 attempts each",
			retried, retrySrv.attempts("retry-0"))
	}
	unretried := client.run(proxylessJob{Target: retryTarget, Calls: 10, RequestIDs: "noretry", Method: retryMethod,
		Metadata: map[string]string{"x-fail": "1"}})
	if unretried.Codes["Unavailable"] != 10 || retrySrv.attempts("noretry-0") != 1 {
		t.Errorf("retries {attempts: 0} with a failing attempt: %+v (%d attempts), want 10 × Unavailable after 1 attempt", unretried, retrySrv.attempts("noretry-0"))
	}

	// The client is a node of the control plane, in sync.
	st, err := cp.status()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range st.Proxies {
		if strings.HasPrefix(p.ID, "client-grpc-") && p.Connected && p.InSync {
			found = true
		}
	}
	if !found || st.Generation != 1 {
		t.Errorf("skein control status: generation %d, proxies %+v; want generation 1 and the proxyless client connected and in sync", st.Generation, st.Proxies)
	}

	// An invalid edit (a negative weight) is rejected with file:line: field, and the
	// previous config keeps serving.
	bad := strings.Replace(controlRouting("v2", 90, 10), "weight: 10", "weight: -10", 1)
	writeFile(t, routing, bad)
	waitFor(t, 10*time.Second, "the invalid edit to be reported", func() bool {
		st, err := cp.status()
		return err == nil && len(st.ConfigErrors) > 0
	})
	st, _ = cp.status()
	if !strings.Contains(strings.Join(st.ConfigErrors, "\n"), "catalog-routing.yaml:17:") ||
		!strings.Contains(strings.Join(st.ConfigErrors, "\n"), "spec.http[2].route[1].weight") || st.Generation != 1 {
		t.Errorf("rejected edit: generation %d, errors %q; want catalog-routing.yaml:17: ... spec.http[2].route[1].weight at generation 1", st.Generation, st.ConfigErrors)
	}
	if out, _ := skeinCmd("status", "--api", cp.api); !strings.Contains(out, "REJECTED") || !strings.Contains(out, "catalog-routing.yaml:17:") {
		t.Errorf("skein status --api does not show the rejected edit:\n%s", out)
	}
	if !strings.Contains(cp.out.String(), "config rejected (previous config keeps serving)") {
		t.Errorf("skein control did not report the rejected edit:\n%s", cp.out.String())
	}
	const m = 200
	kept := client.run(proxylessJob{Target: target, Calls: m})
	// 90/10 of 200: v2 expects 20 (sd ≈ 4.2); ±3.5 sd.
	if kept.Codes["OK"] != m || kept.Workloads["catalog-v2"] < 5 || kept.Workloads["catalog-v2"] > 35 {
		t.Errorf("after the rejected edit the 90/10 split must keep serving; over %d RPCs: %+v", m, kept)
	}

	// A valid edit: everything to v2, the canary header to v1. The running client
	// follows it without a restart.
	writeFile(t, routing, strings.Replace(controlRouting("v1", 0, 100), "    - {destination: {host: catalog, subset: v1}, weight: 0}\n", "", 1))
	var last proxylessResult
	if !poll(15*time.Second, func() bool {
		last = client.run(proxylessJob{Target: target, Calls: 20})
		return last.Workloads["catalog-v2"] == 20
	}) {
		st, _ := cp.status()
		t.Fatalf("the running client did not follow the edit within 15s: last %+v; control plane generation %d, errors %q, cp error %q, proxies %+v\n%s",
			last, st.Generation, st.ConfigErrors, st.ControlPlaneError, st.Proxies, cp.out.String())
	}
	if all := client.run(proxylessJob{Target: target, Calls: 100}); all.Workloads["catalog-v2"] != 100 {
		t.Errorf("after the edit to 100%% v2: %+v", all)
	}
	if canary := client.run(proxylessJob{Target: target, Calls: 20, Metadata: map[string]string{"x-canary": "true"}}); canary.Workloads["catalog-v1"] != 20 {
		t.Errorf("after the edit, x-canary: true: %+v, want catalog-v1 only", canary)
	}
	if st, err := cp.status(); err != nil || st.Generation != 2 || len(st.ConfigErrors) != 0 {
		t.Errorf("after the valid edit: generation %d, errors %q (%v); want generation 2 and no errors", st.Generation, st.ConfigErrors, err)
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// poll reports whether cond held before d was up.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// TestUpWorkloadEntry: skein up reads WorkloadEntries too: a mesh workload's sidecar
// reaches a process skein up does not run (an echo server of this test) through the
// Service that selects its WorkloadEntry, mixed with a replica skein up runs.
func TestUpWorkloadEntry(t *testing.T) {
	port := startEchoBackend(t, "legacy-vm")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mesh.yaml"), fmt.Sprintf(`apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec: {command: ["skein", "echo"]}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: legacy-new, labels: {app: legacy, version: new}}
spec:
  command: ["skein", "echo"]
  ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy-vm}
spec:
  address: 127.0.0.1
  ports: {http: %d}
  labels: {app: legacy, version: vm}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: legacy}
spec:
  host: legacy
  subsets:
  - {name: vm, labels: {version: vm}}
  - {name: new, labels: {version: new}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy}
spec:
  hosts: [legacy]
  http:
  - match: [{headers: {x-vm: {exact: "true"}}}]
    route: [{destination: {host: legacy, subset: vm}}]
  - route: [{destination: {host: legacy}}]
`, port))
	m := startMesh(t, dir)
	vm := m.call("client", "http://legacy:8080/", "-n", "20", "-H", "x-vm: true")
	if vm.Backends["legacy-vm"] != 20 {
		t.Errorf("x-vm: true: %+v, want the WorkloadEntry's server only\n%s", vm, m.logs())
	}
	both := m.call("client", "http://legacy:8080/", "-n", "200", "-c", "4")
	// Round robin over the WorkloadEntry and the replica: about 100 each.
	if both.Backends["legacy-vm"] < 50 || both.Backends["legacy-new"] < 50 || both.Backends["legacy-vm"]+both.Backends["legacy-new"] != 200 {
		t.Errorf("legacy over its WorkloadEntry and its replica: %+v, want both", both)
	}
}
