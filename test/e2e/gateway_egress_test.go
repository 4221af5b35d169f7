package e2e

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// egressConfig is Istio's egress gateway with TLS origination ("Egress gateways with
// TLS origination"): the client calls http://ext.example.com, its sidecar sends the call
// to the egress gateway (the VirtualService's `mesh` match), and the gateway (its own
// match) sends it to the external host's port 443, originating TLS there as the
// DestinationRule says (SIMPLE, SNI, the CA that signed the server).
const egressConfig = `
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: egressgateway, namespace: istio-system, labels: {istio: egressgateway}}
spec: {role: gateway}
---
apiVersion: v1
kind: Service
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  ports: [{name: http, port: %[1]d}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %[2]d, https: %[2]d}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: %[1]d, name: http, protocol: HTTP}
    hosts: [ext.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext-through-egress}
spec:
  hosts: [ext.example.com]
  gateways: [istio-system/istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: %[1]d}}}]
  - match: [{gateways: [istio-system/istio-egressgateway], port: %[1]d}]
    route: [{destination: {host: ext.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext}
spec:
  host: ext.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, sni: ext.example.com, caCertificates: %[3]s}
`

// TestEgressGatewayTLSOrigination: a local TLS server stands in for the external host;
// it must see the call over TLS, with the SNI and Host of ext.example.com, from the
// egress gateway (not from the client's sidecar).
func TestEgressGatewayTLSOrigination(t *testing.T) {
	ports, err := listenerPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	gwPort := ports[0]
	ca, caKey := newCA(t)
	certPEM, keyPEM := leaf(t, ca, caKey, "ext.example.com")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var served, sawSNI atomic.Int64
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName == "ext.example.com" {
				sawSNI.Add(1)
			}
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"workload": "external", "host": r.Host, "tls": r.TLS != nil, "path": r.URL.Path})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	extPort := ln.Addr().(*net.TCPAddr).Port

	// The gateway proxy may run as a user of its own: the CA file must be readable.
	caDir, err := os.MkdirTemp("", "skein-egress-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(caDir) })
	_ = os.Chmod(caDir, 0o755)
	caFile := filepath.Join(caDir, "ca.pem")
	if err := os.WriteFile(caFile, pemCert(ca.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(fmt.Sprintf(egressConfig, gwPort, extPort, caFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir)

	sum := m.call("client", "http://ext.example.com/egress", "-n", "5")
	if sum.Status[200] != 5 || sum.Backends["external"] != 5 {
		t.Fatalf("calls to ext.example.com: %+v\n%s", sum, m.logs())
	}
	if served.Load() < 5 || sawSNI.Load() == 0 {
		t.Errorf("external server answered %d requests, saw SNI ext.example.com %d times", served.Load(), sawSNI.Load())
	}
	// The gateway, not the client's sidecar, sent them: its access log has the calls.
	logs, _ := filepath.Glob(filepath.Join(m.stateDir, "logs", "egressgateway-0.istio-system.access.log"))
	if len(logs) == 1 {
		data := readAccessLog(logs[0], func(data string) bool { return data != "" })
		if len(data) == 0 {
			t.Errorf("the egress gateway's access log is empty: the calls did not go through it")
		}
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
