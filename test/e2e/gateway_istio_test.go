package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// istioIngressConfig is Istio's ingress pattern: a gateway Workload (role gateway, no
// command) that an Istio Gateway selects by label, VirtualServices bound to it with
// `gateways:` (one also to the reserved `mesh`), a canary split by DestinationRule
// subsets, and an HTTPS server whose certificate comes from credentialName.
const istioIngressConfig = `
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: ingressgateway, namespace: istio-system, labels: {istio: ingressgateway}}
spec: {role: gateway}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: shop-v1, labels: {app: shop, version: v1}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: shop-v2, labels: {app: shop, version: v2}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*/shop.example.com", "*/shop.default.svc.cluster.local"]
  - port: {number: %d, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: %d, name: mtls, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: MUTUAL, credentialName: shop-mtls}
  - port: {number: %d, name: pass, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: tls-backend, labels: {app: tls-backend}}
spec:
  command: ["skein", "echo", "--tls-cert", "%s", "--tls-key", "%s"]
  ports: [{containerPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: tls-backend}
spec:
  selector: {app: tls-backend}
  ports: [{name: tls, port: 443, targetPort: 8443}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass}
spec:
  hosts: [pass.example.com]
  gateways: [istio-system/shop-gateway]
  tls:
  - match: [{sniHosts: [pass.example.com]}]
    route: [{destination: {host: tls-backend, port: {number: 443}}}]
---
apiVersion: v1
kind: Secret
metadata: {name: shop-mtls, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s, ca.crt: %s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/shop-gateway]
  http:
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: shop, subset: v2}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - route:
    - {destination: {host: shop, subset: v1}, weight: 80}
    - {destination: {host: shop, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-mesh}
spec:
  hosts: [shop]
  gateways: [mesh, istio-system/shop-gateway]
  http:
  - route: [{destination: {host: shop, subset: v2}}]
`

// TestIstioIngressGateway: requests from the host to the Istio gateway's servers,
// and from a sidecar for the VirtualService bound to both the gateway and `mesh`.
func TestIstioIngressGateway(t *testing.T) {
	ports, err := listenerPorts(4)
	if err != nil {
		t.Fatal(err)
	}
	httpPort, httpsPort, mtlsPort, passPort := ports[0], ports[1], ports[2], ports[3]
	ca, caKey := newCA(t)
	c, k := leaf(t, ca, caKey, "shop.example.com")
	b64 := base64.StdEncoding.EncodeToString
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	dir := t.TempDir()
	// The passthrough backend's certificate, readable by the backend's own user.
	passCert, passKey := leaf(t, ca, caKey, "pass.example.com")
	certDir, err := os.MkdirTemp("", "skein-istio-gw-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(certDir) })
	_ = os.Chmod(certDir, 0o755)
	certFile, keyFile := filepath.Join(certDir, "pass.crt"), filepath.Join(certDir, "pass.key")
	_ = os.WriteFile(certFile, passCert, 0o644)
	_ = os.WriteFile(keyFile, passKey, 0o644) // a throwaway test key
	cfg := fmt.Sprintf(istioIngressConfig, b64(c), b64(k), httpPort, httpsPort, mtlsPort, passPort, certFile, keyFile, b64(c), b64(k), b64(caPEM))
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	s := &gwSuite{roots: roots, plain: &http.Client{Timeout: 10 * time.Second}}
	s.m = startMesh(t, dir)
	deadline := time.Now().Add(20 * time.Second)
	for s.do(t, req{port: httpPort, host: "shop.example.com", path: "/"}).status != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}

	t.Run("canary header goes to v2", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			s.expect(t, req{port: httpPort, host: "shop.example.com", path: "/", headers: map[string]string{"x-canary": "true"}}, 200, "shop-v2")
		}
	})
	t.Run("80/20 split", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 200; i++ {
			seen[s.do(t, req{port: httpPort, host: "shop.example.com", path: "/"}).backend]++
		}
		if seen["shop-v1"] < 130 || seen["shop-v1"] > 190 || seen["shop-v1"]+seen["shop-v2"] != 200 {
			t.Errorf("split %v, want about 160/40", seen)
		}
	})
	t.Run("VirtualService redirect on the gateway", func(t *testing.T) {
		noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		hr, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/old", httpPort), nil)
		hr.Host = "shop.example.com"
		resp, err := noFollow.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "http://shop.example.com/new" {
			t.Errorf("%d %q, want 301 to http://shop.example.com/new", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("host not on the server is 404", func(t *testing.T) {
		s.expect(t, req{port: httpPort, host: "other.example.com", path: "/"}, 404, "")
	})
	t.Run("HTTPS with the credentialName certificate", func(t *testing.T) {
		a := s.expect(t, req{port: httpsPort, host: "shop.example.com", path: "/", headers: map[string]string{"x-canary": "true"}, https: true}, 200, "shop-v2")
		if a.certName != "shop.example.com" {
			t.Errorf("certificate for %q", a.certName)
		}
	})
	t.Run("MUTUAL needs a client certificate from the Secret's CA", func(t *testing.T) {
		clientPEM, clientKey := leaf(t, ca, caKey, "client.example.com")
		clientCert, err := tls.X509KeyPair(clientPEM, clientKey)
		if err != nil {
			t.Fatal(err)
		}
		get := func(certs []tls.Certificate) (int, error) {
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
				TLSClientConfig: &tls.Config{ServerName: "shop.example.com", RootCAs: roots, Certificates: certs}}}
			hr, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", mtlsPort), nil)
			hr.Host = "shop.example.com"
			resp, err := cl.Do(hr)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		if code, err := get([]tls.Certificate{clientCert}); err != nil || code != 200 {
			t.Errorf("with a client certificate: %d, %v", code, err)
		}
		if code, err := get(nil); err == nil {
			t.Errorf("without a client certificate: %d, want the handshake refused", code)
		}
	})
	t.Run("PASSTHROUGH by SNI to the backend's own TLS", func(t *testing.T) {
		a := s.do(t, req{port: passPort, host: "pass.example.com", path: "/p", https: true})
		if a.status != 200 || a.backend != "tls-backend" || a.certName != "pass.example.com" {
			t.Errorf("%d from %q with certificate %q, want 200 from tls-backend with pass.example.com", a.status, a.backend, a.certName)
		}
	})
	t.Run("VirtualService bound to the gateway and mesh: gateway", func(t *testing.T) {
		s.expect(t, req{port: httpPort, host: "shop.default.svc.cluster.local", path: "/"}, 200, "shop-v2")
	})
	t.Run("VirtualService bound to the gateway and mesh: sidecar", func(t *testing.T) {
		sum := s.m.call("client", "http://shop:8080/", "-n", "10")
		if sum.Backends["shop-v2"] != 10 {
			t.Errorf("calls from the client's sidecar: %+v, want all to shop-v2", sum)
		}
	})
	t.Run("gateway-only VirtualService does not apply to sidecars", func(t *testing.T) {
		// shop.example.com is not a service: the sidecar has no route for it.
		sum := s.m.call("client", "http://shop.example.com/", "-n", "1")
		if sum.Status[200] != 0 {
			t.Errorf("a sidecar routed a gateway-only host: %+v", sum)
		}
	})
}

// TestGatewayNetns: in isolation netns the workloads are pods; the gateway proxy runs
// on the host and reaches them on their pod addresses, with mesh mTLS.
func TestGatewayNetns(t *testing.T) {
	ports, err := listenerPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: web-v1, labels: {app: web, version: v1}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: web-v2, labels: {app: web, version: v2}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v1}
spec: {selector: {version: v1}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2}
spec: {selector: {version: v2}, ports: [{name: http, port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: skein}
spec: {controllerName: skein.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: skein
  listeners: [{name: http, port: %d, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {value: /v2}}]
    backendRefs: [{name: web-v2, port: 8080}]
  - backendRefs: [{name: web-v1, port: 8080}]
`, ports[0])
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &gwSuite{plain: &http.Client{Timeout: 10 * time.Second}}
	s.m = startMeshWith(t, dir, "netns")
	deadline := time.Now().Add(20 * time.Second)
	for s.do(t, req{port: ports[0], host: "web", path: "/"}).status != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	s.expect(t, req{port: ports[0], host: "web", path: "/v2/x"}, 200, "web-v2")
	s.expect(t, req{port: ports[0], host: "web", path: "/"}, 200, "web-v1")
}
