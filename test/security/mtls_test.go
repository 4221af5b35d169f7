package security

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/xds/server"
)

// clientsConfig adds two callers: sleep (default/sleep) and intruder (bar/intruder).
const clientsConfig = `
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: sleep, namespace: default, labels: {app: sleep}}
spec: {serviceAccount: sleep, command: [skein, echo]}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: intruder, namespace: bar, labels: {app: intruder}}
spec: {serviceAccount: intruder, command: [skein, echo]}
`

// mtlsEnv is env plus a CA and two client sidecars that reach httpbin over mTLS with
// identities obtained by CSR: the principals policies see are real SPIFFE IDs verified
// in a real TLS handshake.
type mtlsEnv struct {
	*env
	authority *ca.CA
	clients   map[string]*model.Proxy // "sleep", "intruder"
}

func newMTLSEnv(t *testing.T) *mtlsEnv {
	t.Helper()
	authority, err := ca.LoadOrCreate(t.TempDir(), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, server.Options{Logger: logger(), Debounce: 10 * time.Millisecond, Register: ca.NewServer(authority).Register}, authority)
	m := &mtlsEnv{env: e, authority: authority, clients: map[string]*model.Proxy{}}
	for _, c := range []struct{ name, ns, sa string }{{"sleep", "default", "sleep"}, {"intruder", "bar", "intruder"}} {
		p := &model.Proxy{
			ID: c.name + "-0." + c.ns, Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: c.ns, Name: c.name},
			Labels: map[string]string{"app": c.name}, ServiceAccount: c.sa, Capture: model.CaptureNone, IP: "127.0.0.1",
			UpstreamPorts: map[string]int{
				"httpbin.foo.svc.cluster.local:8000": freePort(t),
				"httpbin.foo.svc.cluster.local:9000": freePort(t),
			},
		}
		m.clients[c.name] = p
		m.startSidecar(p)
	}
	m.sidecars = 3
	return m
}

// startSidecar runs a proxy with a one-time bootstrap credential for its identity.
func (e *env) startSidecar(p *model.Proxy) {
	e.t.Helper()
	var id *proxy.IdentityOptions
	if e.authority != nil {
		cred, err := e.authority.IssueCredential(p.Workload.Namespace, p.ServiceAccount, p.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		tokenFile := filepath.Join(e.t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(cred.Token), 0o600); err != nil {
			e.t.Fatal(err)
		}
		id = &proxy.IdentityOptions{TokenFile: tokenFile}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- proxy.Run(ctx, proxy.Options{XDSAddress: e.xdsAddr, Node: p, AdminAddress: "127.0.0.1:0", Logger: logger().With("proxy", p.ID), Identity: id})
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			e.t.Error("proxy did not stop")
		}
	})
}

// via sends a request from a client through its sidecar (mTLS to httpbin's sidecar).
func (m *mtlsEnv) via(client string, r request) int {
	m.t.Helper()
	port := m.clients[client].UpstreamPorts["httpbin.foo.svc.cluster.local:8000"]
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+r.path, nil)
	req.Host = "httpbin.foo.svc.cluster.local:8000"
	resp, err := client2.Do(req)
	if err != nil {
		m.t.Fatalf("%s: %v", client, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

var client2 = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}

// tcpVia opens a TCP connection from a client through its sidecar to httpbin's TCP port.
func (m *mtlsEnv) tcpVia(client string) bool {
	m.t.Helper()
	port := m.clients[client].UpstreamPorts["httpbin.foo.svc.cluster.local:9000"]
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		m.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	n, err := io.ReadFull(c, buf)
	return err == nil && n == 4
}

// TestAuthorizationByPeerIdentity runs the principal-based part of the table through
// three real sidecars with mTLS between them.
func TestAuthorizationByPeerIdentity(t *testing.T) {
	m := newMTLSEnv(t)
	tests := []struct {
		name, policies    string
		sleep, intruder   int // HTTP status through each caller's sidecar
		tcpSleep, tcpIntr bool
	}{
		{"no policy", "", 200, 200, true, true},
		{"principals", allowPolicy("p", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]"), 200, 403, true, false},
		{"notPrincipals", allowPolicy("p", "  rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]}]"), 403, 200, false, true},
		{"principals wildcard: any mTLS peer", allowPolicy("p", "  rules: [{from: [{source: {principals: [\"*\"]}}]}]"), 200, 200, true, true},
		{"namespaces", allowPolicy("p", "  rules: [{from: [{source: {namespaces: [default]}}]}]"), 200, 403, true, false},
		{"notNamespaces", allowPolicy("p", "  rules: [{from: [{source: {notNamespaces: [default]}}]}]"), 403, 200, false, true},
		{"serviceAccounts", allowPolicy("p", "  rules: [{from: [{source: {serviceAccounts: [default/sleep]}}]}]"), 200, 403, true, false},
		{"notServiceAccounts", allowPolicy("p", "  rules: [{from: [{source: {notServiceAccounts: [default/sleep]}}]}]"), 403, 200, false, true},
		{"deny principal", allowPolicy("p", "  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/bar/sa/intruder]}}]}]"), 200, 403, true, false},
		{"when source.namespace", allowPolicy("p", "  rules: [{when: [{key: source.namespace, values: [bar]}]}]"), 403, 200, false, true},
		{"when source.principal", allowPolicy("p", "  rules: [{when: [{key: source.principal, values: [\"*/sa/sleep\"]}]}]"), 200, 403, true, false},
		{"principal and path", allowPolicy("p", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}], to: [{operation: {paths: [\"/x\"]}}]}]"), 403, 403, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.t = t
			m.apply(clientsConfig + "\n---\n" + tt.policies)
			if got := m.via("sleep", request{path: "/"}); got != tt.sleep {
				t.Errorf("sleep: status %d, want %d", got, tt.sleep)
			}
			if got := m.via("intruder", request{path: "/"}); got != tt.intruder {
				t.Errorf("intruder: status %d, want %d", got, tt.intruder)
			}
			if got := m.tcpVia("sleep"); got != tt.tcpSleep {
				t.Errorf("sleep tcp allowed = %v, want %v", got, tt.tcpSleep)
			}
			if got := m.tcpVia("intruder"); got != tt.tcpIntr {
				t.Errorf("intruder tcp allowed = %v, want %v", got, tt.tcpIntr)
			}
		})
	}
	t.Run("plaintext caller has no principal", func(t *testing.T) {
		m.t = t
		m.apply(clientsConfig + "\n---\n" + allowPolicy("p", "  rules: [{from: [{source: {principals: [\"*\"]}}]}]"))
		if code, _ := m.do(request{path: "/"}); code != 403 {
			t.Errorf("plaintext straight to the inbound listener: %d, want 403", code)
		}
	})
}
