package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"skein.dev/skein/internal/echo"
)

// startExternal runs a `skein echo` outside the mesh (no sidecar, not in the registry)
// on a free loopback port, answering as workload name; extra args go to skein echo.
func startExternal(t *testing.T, name string, args ...string) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(skeinBin, append([]string{"echo", "--port", strconv.Itoa(port)}, args...)...)
	cmd.Env = append(os.Environ(), "SKEIN_WORKLOAD="+name, "SKEIN_NAMESPACE=external")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("external %s did not listen on %d: %v", name, port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// edgeConfig is a mesh with one client and one mesh service, and ServiceEntries for
// hosts served by echo processes outside the mesh. %[1]d is ext-a's port, %[2]d
// ext-b's, %[3]d the external TCP echo's, %[4]d a port nobody listens on.
const edgeConfig = `apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec: {command: ["skein", "echo"]}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec:
  command: ["skein", "echo"]
  ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
# The same workload port as HTTP/2 (h2c), gRPC, and by appProtocol.
apiVersion: v1
kind: Service
metadata: {name: web-h2}
spec:
  selector: {app: web}
  ports: [{name: http2-web, port: 8081, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-grpc}
spec:
  selector: {app: web}
  ports: [{name: tcp-legacy, appProtocol: grpc, port: 9090, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-grpc}
spec:
  hosts: [web-grpc]
  http:
  - match: [{uri: {prefix: /skein.echo}}, {uri: {prefix: /grpc.health}}]
    route: [{destination: {host: web-grpc}}]
---
# DNS resolution: the endpoint is a name the proxy resolves (localhost).
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: DNS
  endpoints: [{address: localhost, ports: {http: %[1]d}}]
---
# STATIC resolution with labelled endpoints, subsets and a VirtualService.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pool}
spec:
  hosts: [pool.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: %[1]d}, labels: {v: a}}
  - {address: 127.0.0.1, ports: {http: %[2]d}, labels: {v: b}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool}
spec:
  host: pool.example.com
  subsets:
  - {name: a, labels: {v: a}}
  - {name: b, labels: {v: b}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pool}
spec:
  hosts: [pool.example.com]
  http:
  - match: [{headers: {x-pool: {exact: b}}}]
    route: [{destination: {host: pool.example.com, subset: b}}]
  - route:
    - {destination: {host: pool.example.com, subset: a}, weight: 100}
---
# A VirtualService on one external host sending some requests to another.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http:
  - match: [{headers: {x-route: {exact: pool-b}}}]
    route: [{destination: {host: pool.example.com, subset: b}}]
  - route: [{destination: {host: api.example.com}}]
---
# DNS_ROUND_ROBIN: one name.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: localhost, ports: {http: %[2]d}}]
---
# Opaque TCP to an external host, and one whose endpoint refuses connections.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp}
spec:
  hosts: [tcp.example.com, tcp2.example.com]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: DNS
  endpoints: [{address: localhost, ports: {tcp: %[3]d}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dead}
spec:
  hosts: [refused.example.com]
  ports: [{number: 9001, name: tcp-dead, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tcp-dead: %[4]d}}]
---
# A second client: tcp routes by source labels send it elsewhere.
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client2, labels: {app: client2}}
spec: {command: ["skein", "echo"]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcpb}
spec:
  hosts: [tcpb.example.com]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: DNS
  endpoints: [{address: localhost, ports: {tcp: %[7]d}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp}
spec:
  hosts: [tcp.example.com]
  tcp:
  - match: [{sourceLabels: {app: client2}}]
    route: [{destination: {host: tcpb.example.com}}]
  - match: [{destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: tcpb.example.com}}]
  - route: [{destination: {host: tcp.example.com}}]
---
# TLS passthrough: the ClientHello's SNI picks the external server; TLS ends there.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls}
spec:
  hosts: [tls.example.com, tls-b.example.com]
  ports: [{number: 9443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls-a}
spec:
  hosts: [tls-a.example.com]
  ports: [{number: 9443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tls: %[5]d}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls-b-pool}
spec:
  hosts: [tls-pool-b.example.com]
  ports: [{number: 9443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tls: %[6]d}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls}
spec:
  hosts: [tls.example.com]
  tls:
  - match: [{sniHosts: [b.example.com, "*.b.example.com"]}]
    route: [{destination: {host: tls-pool-b.example.com}}]
  - match: [{sniHosts: ["*"]}]
    route: [{destination: {host: tls-a.example.com}}]
---
# exportTo ".": only proxies of namespace other see it.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: other}
spec:
  hosts: [hidden.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  exportTo: ["."]
  endpoints: [{address: 127.0.0.1, ports: {http: %[1]d}}]
`

// TestTrafficEdge: ServiceEntry hosts through real sidecars (isolation none: the
// client's HTTP_PROXY and per-upstream ports), to echo processes outside the mesh.
func TestTrafficEdge(t *testing.T) {
	extA := startExternal(t, "ext-a")
	extB := startExternal(t, "ext-b")
	extTCP := startExternal(t, "ext-tcp", "--tcp-echo")
	dead := freePort(t)
	extTCPB := startExternal(t, "ext-tcp-b", "--tcp-echo", "--tcp-greeting", "B")
	tlsA, tlsB := startTLSServer(t, "tls-a"), startTLSServer(t, "tls-b")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mesh.yaml"), fmt.Sprintf(edgeConfig, extA, extB, extTCP, dead, tlsA, tlsB, extTCPB))
	m := startMesh(t, dir)

	httpCases := []struct {
		name      string
		url       string
		headers   []string
		status    int
		backend   string // "" when no backend must answer
		wantFlags string // response flag in the client sidecar's access log
	}{
		{name: "dns resolution", url: "http://api.example.com/", status: 200, backend: "ext-a"},
		{name: "dns resolution, host with port", url: "http://api.example.com:80/x", status: 200, backend: "ext-a"},
		{name: "static resolution, default subset", url: "http://pool.example.com/", status: 200, backend: "ext-a"},
		{name: "static resolution, header to subset b", url: "http://pool.example.com/", headers: []string{"x-pool: b"}, status: 200, backend: "ext-b"},
		{name: "virtual service from one entry to another", url: "http://api.example.com/", headers: []string{"x-route: pool-b"}, status: 200, backend: "ext-b"},
		{name: "dns round robin", url: "http://rr.example.com/", status: 200, backend: "ext-b"},
		{name: "mesh service next to entries", url: "http://web:8080/", status: 200, backend: "web"},
		{name: "exportTo hides another namespace's entry", url: "http://hidden.example.com/", status: 404, wantFlags: "NR"},
		{name: "unknown host", url: "http://unknown.example.com/", status: 404, wantFlags: "NR"},
	}
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{tc.url, "-n", "4"}
			for _, h := range tc.headers {
				args = append(args, "-H", h)
			}
			s := m.call("client", args...)
			if s.Status[tc.status] != 4 {
				t.Fatalf("%s: status %v, want 4 × %d (%v)", tc.url, s.Status, tc.status, s.FirstErrors)
			}
			if tc.backend != "" && s.Backends[tc.backend] != 4 {
				t.Errorf("%s: backends %v, want 4 × %s", tc.url, s.Backends, tc.backend)
			}
			if tc.wantFlags != "" {
				host := strings.TrimPrefix(strings.TrimSuffix(tc.url, "/"), "http://")
				waitAccessLog(t, m, "client", func(l string) bool {
					return strings.Contains(l, `"authority":"`+host+`"`) && strings.Contains(l, `"response_flags":"`+tc.wantFlags+`"`)
				})
			}
		})
	}

	t.Run("tls passthrough", func(t *testing.T) { checkTLSPassthrough(t, m.execEnv("client")) })
	checkProtocols(t, m, m.execEnv("client"))

	envs := map[string]map[string]string{"client": m.execEnv("client"), "client2": m.execEnv("client2")}
	tcpCases := []struct {
		name, client, envVar string
		echo                 bool
		greeting             string // the external server's first line, when it sends one
		wantFlags            string
	}{
		{name: "tcp to a dns entry", envVar: "TCP_EXAMPLE_COM_SERVICE_PORT_TCP", echo: true},
		{name: "second host of one entry", envVar: "TCP2_EXAMPLE_COM_SERVICE_PORT_TCP", echo: true},
		{name: "tcp route by source labels", client: "client2", envVar: "TCP_EXAMPLE_COM_SERVICE_PORT_TCP", echo: true, greeting: "B"},
		{name: "tcp route by destination subnet not taken", envVar: "TCP_EXAMPLE_COM_SERVICE_PORT_TCP", echo: true},
		{name: "connect failure is UF", envVar: "REFUSED_EXAMPLE_COM_SERVICE_PORT_TCP_DEAD", wantFlags: "UF"},
	}
	for _, tc := range tcpCases {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client
			if client == "" {
				client = "client"
			}
			port := envs[client][tc.envVar]
			if port == "" {
				t.Fatalf("client env has no %s", tc.envVar)
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				_, _ = io.WriteString(c, "hello external")
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			got, _ := io.ReadAll(c)
			greeting, echoed, _ := strings.Cut(string(got), "\r\n")
			if tc.greeting == "" {
				greeting, echoed = "", string(got)
			}
			if tc.echo && (echoed != "hello external" || greeting != tc.greeting) {
				t.Errorf("echo through the sidecar: %q, want greeting %q then the echo", got, tc.greeting)
			}
			if !tc.echo && len(got) != 0 {
				t.Errorf("a refused upstream answered %q", got)
			}
			if tc.wantFlags != "" {
				waitAccessLog(t, m, "client", func(l string) bool {
					return strings.Contains(l, `"response_flags":"`+tc.wantFlags+`"`) && strings.Contains(l, "refused.example.com")
				})
			}
		})
	}
}

// checkTLSPassthrough: a TLS client through the client's per-upstream port for
// tls.example.com; the ClientHello's SNI picks the server.
func checkTLSPassthrough(t *testing.T, env map[string]string) {
	port := env["TLS_EXAMPLE_COM_SERVICE_PORT_TLS"]
	if port == "" {
		t.Fatalf("client env has no TLS_EXAMPLE_COM_SERVICE_PORT_TLS")
	}
	for _, tc := range []struct{ sni, want string }{
		{"b.example.com", "tls-b"},
		{"x.b.example.com", "tls-b"},
		{"a.example.com", "tls-a"},
		{"tls.example.com", "tls-a"},
	} {
		t.Run("sni "+tc.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("TLS through the sidecar: %v", err)
			}
			defer c.Close()
			// The certificate is the external server's own: TLS was not terminated.
			if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != tc.want {
				t.Errorf("certificate of %q, want %q", cn, tc.want)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			got, _ := io.ReadAll(c)
			if string(got) != tc.want {
				t.Errorf("SNI %s reached %q, want %q", tc.sni, got, tc.want)
			}
		})
	}
}

// checkProtocols: the protocols a sidecar carries, each through two sidecars (client's
// per-upstream port → web's sidecar → web): h2c end to end, gRPC status and message
// through trailers, the proxy's own answer as a gRPC status, WebSocket upgrade.
func checkProtocols(t *testing.T, m *mesh, env map[string]string) {
	addr := func(v string) string {
		t.Helper()
		if env[v] == "" {
			t.Fatalf("client env has no %s", v)
		}
		return net.JoinHostPort("127.0.0.1", env[v])
	}
	t.Run("h2c by port name http2", func(t *testing.T) {
		client := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, a)
			}}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + addr("WEB_H2_SERVICE_PORT_HTTP2_WEB") + "/h2")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct{ Workload, Proto string }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || got.Workload != "web" || got.Proto != "HTTP/2.0" {
			t.Errorf("client got %s, backend %q saw %q: want HTTP/2 on both ends", resp.Proto, got.Workload, got.Proto)
		}
	})
	conn, err := grpc.NewClient(addr("WEB_GRPC_SERVICE_PORT_TCP_LEGACY"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	grpcCases := []struct {
		name     string
		req      map[string]any
		method   string // "" is echo's unary method
		deadline time.Duration
		want     codes.Code
		wantMsg  string
	}{
		{name: "grpc ok by appProtocol", req: map[string]any{"message": "hi"}, want: codes.OK},
		{name: "grpc status and message in trailers", req: map[string]any{echo.FieldGRPCStatus: 5}, want: codes.NotFound, wantMsg: "requested status NotFound"},
		{name: "grpc resource exhausted", req: map[string]any{echo.FieldGRPCStatus: 8}, want: codes.ResourceExhausted},
		{name: "grpc deadline", req: map[string]any{echo.FieldLatency: "3s"}, deadline: 300 * time.Millisecond, want: codes.DeadlineExceeded},
		{name: "grpc no route is UNIMPLEMENTED", method: "/other.Service/Call", want: codes.Unimplemented},
	}
	for _, tc := range grpcCases {
		t.Run(tc.name, func(t *testing.T) {
			cctx := ctx
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			start := time.Now()
			var err error
			if tc.method != "" {
				err = conn.Invoke(cctx, tc.method, &emptypb.Empty{}, &emptypb.Empty{})
			} else {
				_, err = echo.CallGRPC(cctx, conn, tc.req)
			}
			st := status.Convert(err)
			if st.Code() != tc.want || !strings.Contains(st.Message(), tc.wantMsg) {
				t.Errorf("status %v %q, want %v containing %q", st.Code(), st.Message(), tc.want, tc.wantMsg)
			}
			if tc.deadline > 0 && time.Since(start) > 2*time.Second {
				t.Errorf("a %v deadline took %v", tc.deadline, time.Since(start))
			}
		})
	}
	t.Run("websocket upgrade", func(t *testing.T) {
		cfg, err := websocket.NewConfig("ws://"+addr("WEB_SERVICE_PORT_HTTP")+echo.WebSocketPath, "http://client/")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Dialer = &net.Dialer{Timeout: 5 * time.Second}
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatalf("WebSocket through two sidecars: %v\n%s", err, m.logs())
		}
		defer ws.Close()
		_ = ws.SetDeadline(time.Now().Add(10 * time.Second))
		var greeting string
		if err := websocket.Message.Receive(ws, &greeting); err != nil || greeting != "web" {
			t.Fatalf("greeting %q, %v", greeting, err)
		}
		for _, msg := range []string{"ping", strings.Repeat("x", 70000)} {
			if err := websocket.Message.Send(ws, msg); err != nil {
				t.Fatal(err)
			}
			// The echo writes back what it reads, so a long message may come back in
			// several frames.
			var back string
			for len(back) < len(msg) {
				var part string
				if err := websocket.Message.Receive(ws, &part); err != nil {
					t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(back), err)
				}
				back += part
			}
			if back != msg {
				t.Fatalf("echo of %d bytes differs", len(msg))
			}
		}
	})
}

// startTLSServer serves TLS on a free loopback port with a self-signed certificate
// whose common name is name, and writes name to every connection.
func startTLSServer(t *testing.T, name string) int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, name)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitAccessLog waits until a line of the workload's first replica's sidecar access
// log satisfies match.
func waitAccessLog(t *testing.T, m *mesh, workload string, match func(string) bool) {
	t.Helper()
	path := filepath.Join(m.stateDir, "logs", workload+"-0.default.access.log")
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			if match(l) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching line in %s:\n%s", path, tail(string(data), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
