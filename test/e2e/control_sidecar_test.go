package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"skein.dev/skein/internal/echo"
	"skein.dev/skein/internal/model"
)

// startManualProxy runs `skein proxy` for node against the control plane cp, as a
// user wiring a mesh by hand would: its bootstrap credential comes from `skein ca
// credential`, for service account sa. It is interrupted when the test ends.
func startManualProxy(t *testing.T, cp *controlPlane, node model.Proxy, sa string) *syncBuffer {
	t.Helper()
	node.ServiceAccount = sa // the proxy asks for a certificate of this identity
	spec, err := json.Marshal(node)
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if out, err := skeinCmd("ca", "credential", "--api", cp.api, "--proxy-id", node.ID, "--namespace", node.Workload.Namespace,
		"--service-account", sa, "--token-file", token); err != nil {
		t.Fatalf("skein ca credential: %v\n%s", err, out)
	}
	if st, err := os.Stat(token); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", st, err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(skeinBin, "proxy", "--xds-address", cp.xds, "--node-json", string(spec), "--admin-address", "127.0.0.1:0", "--ca-token-file", token)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("skein proxy %s did not stop within 10s after SIGINT", node.ID)
		}
	})
	return out
}

// TestSidecarsAgainstControl: a mesh wired by hand. `skein control` runs alone; three
// `skein proxy` processes connect to it, each with a credential from `skein ca
// credential`: catalog v1 and v2 sidecars in front of echo servers (declared to the
// control plane as WorkloadEntries at the sidecars' inbound ports, labelled
// tlsMode: istio) and a client sidecar whose HTTP proxy port the test calls through.
// Calls go over mesh mTLS (the backend sees the client's SPIFFE ID in XFCC), also
// across a root rotation (skein ca rotate-root --api); the client sidecar applies the
// VirtualService (90/10 split, header route) and follows a live edit.
func TestSidecarsAgainstControl(t *testing.T) {
	app1, app2 := startEchoBackend(t, "catalog-v1"), startEchoBackend(t, "catalog-v2")
	in1, in2, outbound := freePort(t), freePort(t), freePort(t)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "catalog.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: catalog}
spec:
  selector: {app: catalog}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v1}
spec:
  address: 127.0.0.1
  ports: {http: %d}
  labels: {app: catalog, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v2}
spec:
  address: 127.0.0.1
  ports: {http: %d}
  labels: {app: catalog, version: v2, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog}
spec:
  host: catalog
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, in1, in2))
	routing := filepath.Join(dir, "catalog-routing.yaml")
	writeFile(t, routing, sidecarRouting(90, 10))
	cp := startControl(t, dir)

	sidecar := func(name, version string, in, app int) model.Proxy {
		return model.Proxy{
			ID: name + "-0.default", Role: model.RoleSidecar, Capture: model.CaptureNone, IP: "127.0.0.1",
			Workload:     model.NamespacedName{Namespace: "default", Name: name},
			Labels:       map[string]string{"app": "catalog", "version": version},
			InboundPorts: map[int]int{8080: in},
			AppPorts:     map[int]int{8080: app},
		}
	}
	logs := []*syncBuffer{
		startManualProxy(t, cp, sidecar("catalog-v1", "v1", in1, app1), "catalog"),
		startManualProxy(t, cp, sidecar("catalog-v2", "v2", in2, app2), "catalog"),
		startManualProxy(t, cp, model.Proxy{
			ID: "client-0.default", Role: model.RoleSidecar, Capture: model.CaptureNone, IP: "127.0.0.1",
			Workload:         model.NamespacedName{Namespace: "default", Name: "client"},
			Labels:           map[string]string{"app": "client"},
			OutboundHTTPPort: outbound,
		}, "client"),
	}
	dump := func() string {
		var b strings.Builder
		for _, l := range logs {
			b.WriteString(tail(l.String(), 15) + "\n")
		}
		return b.String() + "--- skein control:\n" + tail(cp.out.String(), 15)
	}

	proxyURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", outbound))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	call := func(header string) (string, error) {
		req, _ := http.NewRequest("GET", "http://catalog:8080/", nil)
		if header != "" {
			req.Header.Set("x-canary", header)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		var got echo.Response
		if err := json.Unmarshal(body, &got); err != nil {
			return "", err
		}
		// Mesh mTLS: the backend's sidecar verified the client's certificate.
		if xfcc := got.Headers["x-forwarded-client-cert"]; !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/default/sa/client") {
			return "", fmt.Errorf("%s saw x-forwarded-client-cert %q, want the client's SPIFFE ID", got.Workload, xfcc)
		}
		return got.Workload, nil
	}
	count := func(n int, header string) map[string]int {
		out := map[string]int{}
		for range n {
			w, err := call(header)
			if err != nil {
				w = err.Error()
			}
			out[w]++
		}
		return out
	}

	// Every node connected, in sync and certified (the control plane cannot know how
	// many proxies to expect, so its readiness alone does not say), then traffic flows.
	if !poll(20*time.Second, func() bool {
		st, err := cp.status()
		if err != nil || len(st.Proxies) != 3 {
			return false
		}
		for _, p := range st.Proxies {
			if !p.Connected || !p.InSync || !strings.HasPrefix(p.SPIFFEID, "spiffe://cluster.local/ns/default/sa/") {
				return false
			}
		}
		return true
	}) {
		st, _ := cp.status()
		t.Fatalf("the three proxies did not connect, sync and get certificates within 20s: %+v\n%s", st.Proxies, dump())
	}
	if out, err := skeinCmd("status", "--api", cp.api); err != nil || strings.Count(out, "SYNCED") != 3 || strings.Count(out, "spiffe://") != 3 {
		t.Errorf("skein status --api: %v\n%s", err, out)
	}
	var lastErr error
	if !poll(15*time.Second, func() bool { _, lastErr = call(""); return lastErr == nil }) {
		t.Fatalf("no answer through the client sidecar: %v\n%s", lastErr, dump())
	}

	const n = 200
	split := count(n, "")
	t.Logf("90/10 split over %d requests through hand-started sidecars: %v", n, split)
	// 90/10 of 200: v2 expects 20 (sd ≈ 4.2); ±3.5 sd.
	if split["catalog-v1"]+split["catalog-v2"] != n || split["catalog-v2"] < 5 || split["catalog-v2"] > 35 {
		t.Errorf("weighted split 90/10 over %d requests: %v\n%s", n, split, dump())
	}
	if canary := count(30, "true"); canary["catalog-v2"] != 30 {
		t.Errorf("x-canary: true: %v, want catalog-v2 only", canary)
	}

	// Root rotation through skein control: the new root reaches every proxy before it
	// signs, and mTLS keeps working across it.
	if out, err := skeinCmd("ca", "rotate-root", "--api", cp.api); err != nil || !strings.Contains(out, "signing") || !strings.Contains(out, "previous") {
		t.Fatalf("skein ca rotate-root --api: %v\n%s\n%s", err, out, dump())
	}
	if after := count(20, ""); after["catalog-v1"]+after["catalog-v2"] != 20 {
		t.Errorf("after the root rotation: %v", after)
	}

	// A live edit reaches the running client sidecar.
	writeFile(t, routing, sidecarRouting(0, 100))
	if !poll(15*time.Second, func() bool { return count(20, "")["catalog-v2"] == 20 }) {
		t.Fatalf("the client sidecar did not follow the edit to 100%% v2 within 15s\n%s", dump())
	}
	if all := count(100, ""); all["catalog-v2"] != 100 {
		t.Errorf("after the edit to 100%% v2: %v", all)
	}
}

// sidecarRouting is catalog's VirtualService for the hand-wired mesh.
func sidecarRouting(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: catalog, subset: v2}}]
  - route:
    - {destination: {host: catalog, subset: v1}, weight: %d}
    - {destination: {host: catalog, subset: v2}, weight: %d}
`, v1, v2)
}
