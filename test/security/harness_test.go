// Package security runs AuthorizationPolicy and RequestAuthentication through the real
// pipeline: YAML → config loader → model → translator → go-control-plane xDS server on
// 127.0.0.1 → the skein proxy (proxy.Run, in-process: the same code `skein proxy`
// runs) → real HTTP requests and TCP connections to its inbound listeners, forwarded
// to real backends. The authorization table runs twice: plaintext straight to
// httpbin's sidecar, and as a mesh call from the sleep workload's sidecar over mutual
// TLS (certificates from the CA by CSR, as in `skein up`).
package security

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/xds/server"
)

// baseConfig is the mesh every case adds policies to: workload httpbin in namespace
// foo with an HTTP port 8080 and a TCP port 9000.
const baseConfig = `
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}, {name: tcp-echo, port: 9000}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: foo, labels: {app: httpbin, version: v1}}
spec:
  serviceAccount: httpbin
  command: [skein, echo]
  ports: [{name: http, containerPort: 8080}, {name: tcp-echo, containerPort: 9000}]
`

// env is one control plane, one sidecar for foo/httpbin, and its two backends.
type env struct {
	t        *testing.T
	xds      *server.Server
	admin    string
	httpAddr string // the inbound listener of container port 8080
	tcpAddr  string // the inbound listener of container port 9000
	node     *model.Proxy
	xdsAddr  string
	// authority, when set, issues identities and its bundle goes into every mesh.
	authority *ca.CA
	sidecars  int // how many nodes must be in sync after a push
	gen       int64
	mu        sync.Mutex
	seen      []http.Header // headers the HTTP backend received
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func logger() *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, server.Options{Logger: logger(), Debounce: 10 * time.Millisecond}, nil)
}

// newEnvWith starts the control plane with opts and the httpbin sidecar (with an
// identity from authority when it is set).
func newEnvWith(t *testing.T, opts server.Options, authority *ca.CA) *env {
	t.Helper()
	e := &env{t: t, authority: authority, sidecars: 1}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// HTTP backend: answers 200 and records the headers it got.
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "header": r.Header})
	})}
	go func() { _ = hs.Serve(httpLn) }()
	t.Cleanup(func() { hs.Close() })

	// TCP backend: echoes.
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { tcpLn.Close() })

	in8080, in9000 := freePort(t), freePort(t)
	e.httpAddr = "127.0.0.1:" + strconv.Itoa(in8080)
	e.tcpAddr = "127.0.0.1:" + strconv.Itoa(in9000)
	e.node = &model.Proxy{
		ID: "httpbin-0.foo", Role: model.RoleSidecar,
		Workload:       model.NamespacedName{Namespace: "foo", Name: "httpbin"},
		Labels:         map[string]string{"app": "httpbin", "version": "v1"},
		ServiceAccount: "httpbin", Capture: model.CaptureNone, IP: "127.0.0.1",
		InboundPorts: map[int]int{8080: in8080, 9000: in9000},
		AppPorts: map[int]int{
			8080: httpLn.Addr().(*net.TCPAddr).Port,
			9000: tcpLn.Addr().(*net.TCPAddr).Port,
		},
	}

	e.xds = server.New(opts)
	xdsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.xdsAddr = xdsLn.Addr().String()
	xdsDone := make(chan struct{})
	go func() { defer close(xdsDone); _ = e.xds.Serve(ctx, xdsLn) }()

	var identity *proxy.IdentityOptions
	if authority != nil {
		cred, err := authority.IssueCredential("foo", "httpbin", e.node.ID)
		if err != nil {
			t.Fatal(err)
		}
		tokenFile := t.TempDir() + "/token"
		if err := os.WriteFile(tokenFile, []byte(cred.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		identity = &proxy.IdentityOptions{TokenFile: tokenFile}
	}
	adminCh := make(chan string, 1)
	proxyDone := make(chan error, 1)
	go func() {
		proxyDone <- proxy.Run(ctx, proxy.Options{
			XDSAddress: xdsLn.Addr().String(), Node: e.node, AdminAddress: "127.0.0.1:0",
			Logger: logger(), OnAdminListening: func(a string) { adminCh <- a }, Identity: identity,
		})
	}()
	select {
	case e.admin = <-adminCh:
	case err := <-proxyDone:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy admin did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-proxyDone:
		case <-time.After(15 * time.Second):
			t.Error("proxy did not stop")
		}
		<-xdsDone
	})
	return e
}

// load parses the base config plus policies as one file.
func load(t *testing.T, policies string) (*model.Mesh, error) {
	t.Helper()
	return config.LoadBytes("policies.yaml", []byte(baseConfig+"\n---\n"+policies))
}

// apply loads policies and waits until the proxy has ACKed the resulting config.
func (e *env) apply(policies string) {
	e.t.Helper()
	mesh, err := load(e.t, policies)
	if err != nil {
		e.t.Fatalf("config rejected:\n%v", err)
	}
	e.push(mesh)
}

func (e *env) push(mesh *model.Mesh) {
	e.t.Helper()
	e.gen++
	mesh.Generation = e.gen
	if e.authority != nil {
		mesh.Security = &model.Security{TrustDomain: "cluster.local", RootCertsPEM: string(e.authority.BundlePEM())}
		for _, port := range []int{8080, 9000} {
			mesh.Endpoints = append(mesh.Endpoints, model.Endpoint{Workload: e.node.Workload, Labels: e.node.Labels,
				Address: "127.0.0.1", Port: e.node.InboundPorts[port], TargetPort: port, Healthy: true, Sidecar: true})
		}
	}
	e.xds.Update(mesh)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if e.xds.AppliedGeneration() >= e.gen {
			synced := 0
			var versions map[string]string
			for _, st := range e.xds.Status() {
				if st.InSync && st.Error == "" {
					synced++
				}
				if st.ID == e.node.ID {
					versions = st.Versions
				}
				if st.ID == e.node.ID && st.Error != "" {
					e.t.Fatalf("translation failed: %s", st.Error)
				}
				if st.ID == e.node.ID && st.NACK != nil {
					e.t.Fatalf("proxy NACKed: %s", st.NACK.Message)
				}
			}
			// The server counts a node in sync when it ACKs, which the proxy does
			// just before it applies the update: also wait for the proxy's own
			// status, published once the update is applied.
			if synced >= e.sidecars && e.applied(versions) {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("proxy did not apply generation %d: %+v", e.gen, e.xds.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// applied: the httpbin proxy's admin reports every type it has at the version the
// control plane set for it (types a push did not change keep their version).
func (e *env) applied(versions map[string]string) bool {
	resp, err := http.Get("http://" + e.admin + "/config_dump")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var dump struct {
		Types map[string]struct{ Version string } `json:"types"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		return false
	}
	short := map[string]string{
		"type.googleapis.com/envoy.config.listener.v3.Listener":                "LDS",
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":         "RDS",
		"type.googleapis.com/envoy.config.cluster.v3.Cluster":                  "CDS",
		"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":   "EDS",
		"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "SDS",
	}
	if dump.Types["type.googleapis.com/envoy.config.listener.v3.Listener"].Version == "" {
		return false
	}
	for typ, td := range dump.Types {
		if td.Version != "" && td.Version != versions[short[typ]] {
			return false
		}
	}
	return true
}

// request is one HTTP request to the inbound listener.
type request struct {
	method, path, host string
	header             map[string]string
}

var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}

func (e *env) do(r request) (int, string) {
	e.t.Helper()
	return e.send("http://"+e.httpAddr, r)
}

// send makes a request to base (an inbound listener, or a client sidecar's upstream
// port); it returns the status and body.
func (e *env) send(base string, r request) (int, string) {
	e.t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	path := r.path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// tcpAllowed opens a connection to the TCP inbound listener and reports whether bytes
// come back through the echo backend (a denied connection is closed without data).
func (e *env) tcpAllowed() bool {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.tcpAddr, 5*time.Second)
	if err != nil {
		e.t.Fatalf("dial %s: %v", e.tcpAddr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	n, err := io.ReadFull(c, buf)
	return err == nil && n == 4 && string(buf) == "ping"
}

// metric returns the sum of a counter's samples whose label set contains all of want.
func (e *env) metric(name string, want map[string]string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.admin + "/stats/prometheus")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(line, k+"=\""+v+"\"") {
				ok = false
			}
		}
		if ok {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += f
		}
	}
	return sum
}

func (e *env) lastSeen() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		return nil
	}
	return e.seen[len(e.seen)-1]
}
