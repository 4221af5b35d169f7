package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"text/template"
	"time"
)

// gatewayEnv is what the gateway suite's config is generated from: free high ports for
// the listeners and a throwaway CA with the certificates the listeners and the
// passthrough backend serve.
type gatewayEnv struct {
	HTTP, HostPort, HTTPS, Pass, TCP, Selector, SameNS int
	CAPEM                                              []byte
	ExampleCert, ExampleKey                            string // base64 PEM: *.example.com
	SecondCert, SecondKey                              string // base64 PEM: second.example.org
	OtherNSCert, OtherNSKey                            string // base64 PEM: cross.example.net, in namespace certs
	PassCertFile, PassKeyFile                          string // files: pass.example.com, served by the backend
}

// newGatewayEnv writes the suite's config into a fresh folder and returns it.
func newGatewayEnv(t *testing.T) (gatewayEnv, string) {
	t.Helper()
	ports, err := listenerPorts(7)
	if err != nil {
		t.Fatal(err)
	}
	env := gatewayEnv{HTTP: ports[0], HostPort: ports[1], HTTPS: ports[2], Pass: ports[3], TCP: ports[4], Selector: ports[5], SameNS: ports[6]}
	ca, caKey := newCA(t)
	env.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	c, k := leaf(t, ca, caKey, "example.com", "*.example.com")
	env.ExampleCert, env.ExampleKey = b64(c), b64(k)
	c, k = leaf(t, ca, caKey, "second.example.org")
	env.SecondCert, env.SecondKey = b64(c), b64(k)
	c, k = leaf(t, ca, caKey, "cross.example.net")
	env.OtherNSCert, env.OtherNSKey = b64(c), b64(k)
	dir := t.TempDir()
	c, k = leaf(t, ca, caKey, "pass.example.com")
	// The backend may run as a user of its own (skein up as root): its files must be
	// readable by others, in a folder others can enter (t.TempDir's are not).
	certDir, err := os.MkdirTemp("", "skein-gw-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(certDir) })
	if err := os.Chmod(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	env.PassCertFile, env.PassKeyFile = filepath.Join(certDir, "pass.crt"), filepath.Join(certDir, "pass.key")
	for file, data := range map[string][]byte{env.PassCertFile: c, env.PassKeyFile: k} {
		if err := os.WriteFile(file, data, 0o644); err != nil { // a throwaway test key
			t.Fatal(err)
		}
	}
	for name, text := range gatewayConfig {
		tmpl := template.Must(template.New(name).Parse(text))
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.Execute(f, env); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return env, dir
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

var serial int64 = 10

// leaf issues a server certificate for names; it returns PEM certificate and key.
func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names ...string) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// gatewayConfig is the suite's config, one file per concern, modeled on the upstream
// conformance manifests (backends infra-backend-v1..v3 in namespace gateway-conformance-infra).
var gatewayConfig = map[string]string{
	"backends.yaml": `
apiVersion: v1
kind: Namespace
metadata: {name: team-blue, labels: {team: blue}}
---
` + backend("infra-backend-v1", "gw") + backend("infra-backend-v2", "gw") + backend("infra-backend-v3", "gw") +
		backend("app-backend", "team-blue") + backend("web-backend", "web") + `
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: tcp-backend, namespace: gw, labels: {app: tcp-backend}}
spec:
  command: ["skein", "echo", "--tcp-echo"]
  ports: [{containerPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: tcp-backend, namespace: gw}
spec:
  selector: {app: tcp-backend}
  ports: [{name: tcp, port: 9000}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: tls-backend, namespace: gw, labels: {app: tls-backend}}
spec:
  command: ["skein", "echo", "--tls-cert", "{{.PassCertFile}}", "--tls-key", "{{.PassKeyFile}}"]
  ports: [{containerPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: tls-backend, namespace: gw}
spec:
  selector: {app: tls-backend}
  ports: [{name: tls, port: 443, targetPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: grpc-backend, namespace: gw}
spec:
  selector: {app: infra-backend-v1}
  ports: [{name: grpc, port: 9090, targetPort: 8080}]
`,
	"gateway.yaml": `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: skein}
spec: {controllerName: skein.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: elsewhere}
spec: {controllerName: example.com/another-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other-class, namespace: gw}
spec:
  gatewayClassName: elsewhere
  listeners: [{name: http, port: 1, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gw}
spec:
  gatewayClassName: skein
  listeners:
  - name: http
    port: {{.HTTP}}
    protocol: HTTP
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    port: {{.HTTPS}}
    protocol: HTTPS
    hostname: "*.example.com"
    tls: {certificateRefs: [{name: example-cert}]}
    allowedRoutes: {namespaces: {from: All}}
  - name: https-second
    port: {{.HTTPS}}
    protocol: HTTPS
    hostname: second.example.org
    tls: {certificateRefs: [{name: second-cert}]}
  - name: https-cross
    port: {{.HTTPS}}
    protocol: HTTPS
    hostname: cross.example.net
    tls: {certificateRefs: [{name: cross-cert, namespace: certs}]}
  - name: tls-pass
    port: {{.Pass}}
    protocol: TLS
    hostname: pass.example.com
    tls: {mode: Passthrough}
  - name: tcp
    port: {{.TCP}}
    protocol: TCP
  - name: selector
    port: {{.Selector}}
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: blue}}}}
  - name: same-only
    port: {{.SameNS}}
    protocol: HTTP
    allowedRoutes:
      kinds: [{kind: HTTPRoute}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hostnames, namespace: gw}
spec:
  gatewayClassName: skein
  listeners:
  - {name: listener-1, port: {{.HostPort}}, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: {{.HostPort}}, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: {{.HostPort}}, protocol: HTTP, hostname: "*.bar.com"}
  - {name: listener-4, port: {{.HostPort}}, protocol: HTTP, hostname: "*.foo.com"}
---
# spec.addresses: the listener is bound on that address (another loopback one).
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: addressed, namespace: gw}
spec:
  gatewayClassName: skein
  addresses: [{type: IPAddress, value: 127.0.0.2}]
  listeners: [{name: http, port: {{.HTTP}}, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: addressed, namespace: gw}
spec:
  parentRefs: [{name: addressed}]
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
apiVersion: v1
kind: Secret
metadata: {name: example-cert, namespace: gw}
type: kubernetes.io/tls
data: {tls.crt: {{.ExampleCert}}, tls.key: {{.ExampleKey}}}
---
apiVersion: v1
kind: Secret
metadata: {name: second-cert, namespace: gw}
type: kubernetes.io/tls
data: {tls.crt: {{.SecondCert}}, tls.key: {{.SecondKey}}}
---
apiVersion: v1
kind: Secret
metadata: {name: cross-cert, namespace: certs}
type: kubernetes.io/tls
data: {tls.crt: {{.OtherNSCert}}, tls.key: {{.OtherNSKey}}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways-use-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: gw}]
  to: [{group: "", kind: Secret}]
`,
	"matching.yaml": `
# HTTPRouteMatching, HTTPRouteHeaderMatching, HTTPRouteMethodMatching,
# HTTPRoutePathMatchOrder, HTTPRouteRegexMatching.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [match.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: RegularExpression, value: "/regex/[0-9]+"}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /trailing/}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches:
    - headers: [{name: version, value: one}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches:
    - headers: [{name: version, value: two}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches:
    - headers: [{name: version, value: two}, {name: color, value: orange}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches:
    - headers: [{name: user, type: RegularExpression, value: "^adm[a-z]+$"}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{method: POST}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {value: /method}, method: GET}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
---
# HTTPRouteMatchingAcrossRoutes: the same hostname in two routes.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: across-a, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [across.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /tie}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: across-b, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [across.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /longer/prefix}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /tie}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: across-z-older, namespace: gw, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [across.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
`,
	"hostnames.yaml": `
# HTTPRouteHostnameIntersection and wildcards on the listener without hostname.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: http}]
  hostnames: ["*.wild.com"]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-of-wildcard, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: http}]
  hostnames: [exact.wild.com]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
# HTTPRouteListenerHostnameMatching.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: gw}
spec:
  parentRefs: [{name: hostnames, sectionName: listener-1}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: gw}
spec:
  parentRefs: [{name: hostnames, sectionName: listener-2}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: gw}
spec:
  parentRefs:
  - {name: hostnames, sectionName: listener-3}
  - {name: hostnames, sectionName: listener-4}
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
# Route hostnames narrower than the listener's wildcard (intersection).
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: intersect, namespace: gw}
spec:
  parentRefs: [{name: hostnames, sectionName: listener-3}]
  hostnames: [very.specific.bar.com, "*.other.com"]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
`,
	"backendrefs.yaml": `
# HTTPRouteWeight, zero weights, HTTPRouteInvalidBackendRefUnknownKind,
# HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidCrossNamespaceBackendRef,
# HTTPRouteReferenceGrant, HTTPRouteRequestTimeout.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: weights, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [weights.example.com]
  rules:
  - matches: [{path: {value: /zero}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 1}
    - {name: infra-backend-v2, port: 8080, weight: 0}
  - matches: [{path: {value: /split}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 50}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 20}
  - matches: [{path: {value: /allzero}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 0}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [invalid.example.com]
  rules:
  - matches: [{path: {value: /not-found}}]
    backendRefs: [{name: does-not-exist, port: 8080}]
  - matches: [{path: {value: /unknown-kind}}]
    backendRefs: [{group: example.com, kind: Unicorn, name: infra-backend-v1}]
  - matches: [{path: {value: /cross-ns}}]
    backendRefs: [{name: web-backend, namespace: web, port: 8080}]
  - matches: [{path: {value: /partial}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 1}
    - {name: does-not-exist, port: 8080, weight: 1}
  - matches: [{path: {value: /no-backends}}]
  - matches: [{path: {value: /wrong-port}}]
    backendRefs: [{name: infra-backend-v1, port: 9999}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: granted, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [granted.example.com]
  rules:
  - backendRefs: [{name: app-backend, namespace: team-blue, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-from-gw, namespace: team-blue}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gw}]
  to: [{group: "", kind: Service, name: app-backend}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: timeouts, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [timeout.example.com]
  rules:
  - matches: [{path: {value: /request}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /backend}}]
    timeouts: {request: 10s, backendRequest: 300ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
`,
	"filters.yaml": `
# HTTPRouteRequestHeaderModifier, HTTPRouteResponseHeaderModifier,
# HTTPRouteBackendRequestHeaderModifier, HTTPRouteRedirect* (hostname, path, port,
# scheme, status code), HTTPRouteRewrite* (host, path), HTTPRouteRequestMirror,
# HTTPRouteRequestPercentageMirror, HTTPRouteQueryParamMatching.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: headers, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [headers.example.com]
  rules:
  - matches: [{path: {value: /request}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
        remove: [X-Header-Remove]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /response}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /backend-headers}}]
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Backend, value: v1}]}
    - name: infra-backend-v2
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Backend, value: v2}]}
  - matches: [{path: {value: /query}, queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {value: /query}, queryParams: [{name: color, type: RegularExpression, value: "^bl.*"}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {value: /query}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirects, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [redirect.example.com]
  rules:
  - matches: [{path: {value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {value: /hostname}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8443}}]
  - matches: [{path: {value: /status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]
  - matches: [{path: {value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}]
  - matches: [{path: {value: /prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replaced}}}]
  - matches: [{path: {value: /all}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org, port: 8443, statusCode: 308, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rewrites, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [rewrite.example.com]
  rules:
  - matches: [{path: {value: /foo}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /slash/}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz/}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /empty}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /root}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example.org, path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mirrors, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [mirror.example.com]
  rules:
  - matches: [{path: {value: /all}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /none}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}, percent: 0}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /fraction}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}, fraction: {numerator: 1, denominator: 2}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
# HTTPRouteCORS and HTTPRouteRetry.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors-retry, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [extended.example.com]
  rules:
  - matches: [{path: {value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.org", "https://app.example.com"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-custom]
        exposeHeaders: [x-exposed]
        maxAge: 60
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /retry}}]
    retry: {attempts: 2, codes: [500]}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
# Where a test asks a backend what it saw (its request ledger).
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ledgers, namespace: gw}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{headers: [{name: x-ledger, value: v2}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: x-ledger, value: v3}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
`,
	"gamma.yaml": `
# GAMMA: an HTTPRoute whose parent is a Service configures the sidecars calling it.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-v1, namespace: gw}
spec:
  parentRefs: [{group: "", kind: Service, name: infra-backend-v1, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /to-v2}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: x-to, value: v3}]}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-gamma, value: "yes"}]}
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
`,
	"namespaces.yaml": `
# Gateway listener allowedRoutes: From Selector, Same (default), kinds.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: blue-route, namespace: team-blue}
spec:
  parentRefs: [{name: same-namespace, namespace: gw, sectionName: selector}]
  rules: [{backendRefs: [{name: app-backend, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-route, namespace: web}
spec:
  parentRefs:
  - {name: same-namespace, namespace: gw, sectionName: selector}
  - {name: same-namespace, namespace: gw, sectionName: same-only}
  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-route, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: same-only}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-such-listener, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: nope}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
`,
	"tls.yaml": `
# HTTPS termination per SNI, TLSRoute passthrough, TCPRoute, GRPCRoute.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: https}]
  hostnames: [secure.example.com]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: second, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: https-second}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-cert, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: https-cross}]
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: passthrough, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: tls-pass}]
  hostnames: [pass.example.com]
  rules: [{backendRefs: [{name: tls-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: gw}
spec:
  parentRefs: [{name: same-namespace, sectionName: tcp}]
  rules: [{backendRefs: [{name: tcp-backend, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: gw}
spec:
  parentRefs:
  - {name: same-namespace, sectionName: http}
  - {name: same-namespace, sectionName: same-only}   # allowedRoutes.kinds: HTTPRoute only
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: skein.echo.v1.Echo, method: Echo}}]
    backendRefs: [{name: grpc-backend, port: 9090}]
  - matches: [{method: {service: grpc.health.v1.Health}, headers: [{name: x-health, value: "yes"}]}]
    backendRefs: [{name: grpc-backend, port: 9090}]
  - matches: [{method: {type: RegularExpression, service: 'skein\.echo\..*', method: 'Str.*'}, headers: [{name: x-regex, value: "yes"}]}]
    backendRefs: [{name: grpc-backend, port: 9090}]
`,
}

// backend is an echo Workload and its Service (port 8080).
func backend(name, ns string) string {
	return `
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: ` + name + `, namespace: ` + ns + `, labels: {app: ` + name + `}}
spec:
  command: ["skein", "echo"]
  ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  selector: {app: ` + name + `}
  ports: [{name: http, port: 8080}]
---
`
}

// listenerPorts picks n distinct ports for gateway listeners that are free on
// 127.0.0.1, below the kernel's ephemeral range (32768 and up): a port the kernel may
// give any outgoing connection (other tests' clients and proxies) could be taken
// between choosing it and the gateway proxy binding it.
func listenerPorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + mrand.IntN(12000)
		if seen[p] {
			continue
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		out = append(out, p)
	}
	if len(out) < n {
		return nil, fmt.Errorf("found %d free listener ports of %d", len(out), n)
	}
	return out, nil
}
