package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/xds/server"
)

// secureMesh is a small real mesh in one test process: the CA and the xDS server on
// one gRPC server (as in skein up), the translator's output, two skein proxies with
// workload identities obtained by CSR, an HTTP backend and a TCP echo behind the
// "web" sidecar. Everything talks over real sockets and real TLS.
type secureMesh struct {
	t       *testing.T
	ca      *ca.CA
	xds     *server.Server
	xdsAddr string
	gen     atomic.Int64
	pas     []*model.PeerAuthentication

	backend  *backend
	tcpEcho  string
	web      model.Proxy
	client   model.Proxy
	webPx    *runningProxy
	clientPx *runningProxy
}

var (
	webID    = spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/web")
	clientID = spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/client")
)

func startSecureMesh(t *testing.T, ttl time.Duration) *secureMesh {
	t.Helper()
	return startSecureMeshIn(t, t.TempDir(), ttl)
}

// startSecureMeshIn keeps the CA in caDir (which may hold Istio's plug-in files).
func startSecureMeshIn(t *testing.T, caDir string, ttl time.Duration) *secureMesh {
	t.Helper()
	authority, err := ca.LoadOrCreate(caDir, ca.Options{WorkloadTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	m := &secureMesh{t: t, ca: authority}
	m.xds = server.New(server.Options{Debounce: 20 * time.Millisecond, Register: ca.NewServer(authority).Register})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.xdsAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.xds.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	m.backend = startBackend(t, "web", true)
	m.tcpEcho = startTCPEcho(t)
	port := func() int {
		_, p, _ := net.SplitHostPort(freeAddr(t))
		n, _ := strconv.Atoi(p)
		return n
	}
	backendPort := m.backend.srv.Listener.Addr().(*net.TCPAddr).Port
	_, echoPortS, _ := net.SplitHostPort(m.tcpEcho)
	echoPort, _ := strconv.Atoi(echoPortS)
	m.web = model.Proxy{
		ID: "web-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "web"},
		Labels: map[string]string{"app": "web"}, ServiceAccount: "web", Capture: model.CaptureNone, IP: "127.0.0.1",
		InboundPorts: map[int]int{8080: port(), 9000: port()},
		AppPorts:     map[int]int{8080: backendPort, 9000: echoPort},
	}
	m.client = model.Proxy{
		ID: "client-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "client"},
		Labels: map[string]string{"app": "client"}, ServiceAccount: "client", Capture: model.CaptureNone, IP: "127.0.0.1",
		OutboundHTTPPort: port(),
		UpstreamPorts: map[string]int{
			"web.default.svc.cluster.local:8080": port(),
			"raw.default.svc.cluster.local:9000": port(),
		},
	}
	m.push()
	m.webPx = m.startSidecar(&m.web)
	m.clientPx = m.startSidecar(&m.client)
	m.waitInSync()
	return m
}

// push hands the control plane the mesh with the current policies and CA bundle.
func (m *secureMesh) push() int64 {
	gen := m.gen.Add(1)
	m.xds.Update(&model.Mesh{
		Generation: gen,
		Services: []*model.Service{
			{NamespacedName: model.NamespacedName{Namespace: "default", Name: "web"}, Selector: map[string]string{"app": "web"},
				Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}}},
			{NamespacedName: model.NamespacedName{Namespace: "default", Name: "raw"}, Selector: map[string]string{"app": "web"},
				Ports: []model.ServicePort{{Name: "tcp-raw", Port: 9000, Protocol: model.ProtocolTCP}}},
		},
		Workloads: []*model.Workload{
			{NamespacedName: m.web.Workload, Labels: m.web.Labels, ServiceAccount: "web", Replicas: 1,
				Ports: []model.ContainerPort{{Name: "http", ContainerPort: 8080, AppProtocol: model.ProtocolHTTP}, {Name: "tcp-raw", ContainerPort: 9000, AppProtocol: model.ProtocolTCP}}},
			{NamespacedName: m.client.Workload, Labels: m.client.Labels, ServiceAccount: "client", Replicas: 1},
		},
		Endpoints: []model.Endpoint{
			{Workload: m.web.Workload, Labels: m.web.Labels, Address: "127.0.0.1", Port: m.web.InboundPorts[8080], TargetPort: 8080, Healthy: true, Sidecar: true},
			{Workload: m.web.Workload, Labels: m.web.Labels, Address: "127.0.0.1", Port: m.web.InboundPorts[9000], TargetPort: 9000, Healthy: true, Sidecar: true},
		},
		PeerAuthentications: m.pas,
		Security:            &model.Security{TrustDomain: "cluster.local", RootCertsPEM: string(m.ca.BundlePEM())},
	})
	return gen
}

// waitInSync waits until every node ACKed a snapshot of the newest generation.
func (m *secureMesh) waitInSync() {
	m.t.Helper()
	want := m.gen.Load()
	waitFor(m.t, "proxies in sync with generation "+strconv.FormatInt(want, 10), func() bool {
		if m.xds.AppliedGeneration() < want {
			return false
		}
		st := m.xds.Status()
		if len(st) < 2 {
			return false
		}
		// Applied: every node's snapshot for the generation is set (unchanged content
		// keeps its older version); InSync: the node ACKed that snapshot.
		for _, p := range st {
			if !p.InSync {
				return false
			}
		}
		return true
	})
	for _, px := range []*runningProxy{m.webPx, m.clientPx} {
		waitFor(m.t, "proxy ready", func() bool { code, _ := px.get(m.t, "/ready"); return code == 200 })
	}
}

// startSidecar issues the proxy's bootstrap credential, writes it 0600, and runs it.
func (m *secureMesh) startSidecar(p *model.Proxy) *runningProxy {
	m.t.Helper()
	cred, err := m.ca.IssueCredential(p.Workload.Namespace, p.ServiceAccount, p.ID)
	if err != nil {
		m.t.Fatal(err)
	}
	tokenFile := filepath.Join(m.t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(cred.Token), 0o600); err != nil {
		m.t.Fatal(err)
	}
	return runProxy(m.t, proxy.Options{
		XDSAddress:   m.xdsAddr,
		Node:         p,
		AdminAddress: "127.0.0.1:0",
		Identity:     &proxy.IdentityOptions{TokenFile: tokenFile},
	})
}

// runProxy runs proxy.Run in-process until the test ends.
func runProxy(t *testing.T, opts proxy.Options) *runningProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	adminCh := make(chan string, 1)
	p := &runningProxy{done: make(chan error, 1)}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("proxy", opts.Node.ID)
	opts.OnAdminListening = func(a string) { adminCh <- a }
	go func() { p.done <- proxy.Run(ctx, opts) }()
	select {
	case p.admin = <-adminCh:
	case err := <-p.done:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("admin server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("proxy.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop")
		}
	})
	return p
}

func (m *secureMesh) setPolicies(pas ...*model.PeerAuthentication) {
	m.pas = pas
	m.push()
	m.waitInSync()
}

// viaClient sends a request through the client sidecar's explicit HTTP proxy.
func (m *secureMesh) viaClient(t testing.TB, client *http.Client, path string) (int, echoReply, error) {
	req, _ := http.NewRequest("GET", "http://web.default.svc.cluster.local:8080"+path, nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, echoReply{}, err
	}
	defer resp.Body.Close()
	var r echoReply
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, r, err
	}
	_ = json.Unmarshal(body, &r)
	return resp.StatusCode, r, nil
}

func (m *secureMesh) proxyClient() *http.Client {
	proxyURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", m.client.OutboundHTTPPort))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 16}}
}

func (m *secureMesh) inboundAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.web.InboundPorts[port]))
}

// probeSVID obtains an SVID for ns/sa straight from the CA, as a test client outside
// any sidecar, and returns it with the CA's bundle.
func (m *secureMesh) probeSVID(t *testing.T, ns, sa string) (*x509svid.SVID, *x509bundle.Bundle) {
	t.Helper()
	cred, err := m.ca.IssueCredential(ns, sa, "probe-"+sa)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := spiffeid.FromSegments(m.ca.TrustDomain(), "ns", ns, "sa", sa)
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR(id.String())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := m.ca.Sign(context.Background(), ca.SignRequest{CSR: csrPEM, Credential: cred.Token})
	if err != nil {
		t.Fatal(err)
	}
	s, err := x509svid.Parse(svid.ChainPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := x509bundle.Parse(m.ca.TrustDomain(), m.ca.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

func tcpRoundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// plainGet sends one plaintext HTTP request straight to an inbound port, with a
// forged x-forwarded-client-cert, as a workload outside the mesh could.
func plainGet(addr string) (int, echoReply, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/plain", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/default/sa/admin")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, echoReply{}, err
	}
	defer resp.Body.Close()
	var r echoReply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r, nil
}

func xfcc(r echoReply) string { return r.Header.Get("X-Forwarded-Client-Cert") }

func TestMeshMTLS(t *testing.T) {
	m := startSecureMesh(t, time.Hour)
	client := m.proxyClient()

	t.Run("sidecar to sidecar carries the client's SPIFFE ID", func(t *testing.T) {
		code, r, err := m.viaClient(t, client, "/hello")
		if err != nil || code != 200 {
			t.Fatalf("GET via client sidecar: %d %v", code, err)
		}
		got := xfcc(r)
		if !strings.HasPrefix(got, "By="+webID.String()+";Hash=") || !strings.HasSuffix(got, `;Subject="";URI=`+clientID.String()) {
			t.Errorf("x-forwarded-client-cert = %q, want By=%s;Hash=...;Subject=\"\";URI=%s", got, webID, clientID)
		}
	})

	t.Run("Go TLS probe sees the server's SPIFFE ID, TLS 1.3 and ALPN", func(t *testing.T) {
		svid, bundle := m.probeSVID(t, "default", "probe")
		cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(webID))
		cfg.NextProtos = []string{"h2", "http/1.1"}
		conn, err := tls.Dial("tcp", m.inboundAddr(8080), cfg)
		if err != nil {
			t.Fatalf("mTLS handshake with the web sidecar: %v", err)
		}
		cs := conn.ConnectionState()
		conn.Close()
		if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "h2" {
			t.Errorf("version %x ALPN %q, want TLS 1.3 and h2", cs.Version, cs.NegotiatedProtocol)
		}
		peerID, err := x509svid.IDFromCert(cs.PeerCertificates[0])
		if err != nil || peerID != webID {
			t.Errorf("server certificate ID %v (%v), want %s", peerID, err, webID)
		}
		// A request over that identity reaches the app with the probe's identity.
		tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(webID)), ForceAttemptHTTP2: true}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + m.inboundAddr(8080) + "/probe")
		if err != nil {
			t.Fatal(err)
		}
		var r echoReply
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.HasSuffix(xfcc(r), "URI=spiffe://cluster.local/ns/default/sa/probe") {
			t.Errorf("probe request: %d %s xfcc %q", resp.StatusCode, resp.Proto, xfcc(r))
		}
		// The wrong expected identity is refused by the client's own check.
		bad := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(clientID))
		if c, err := tls.Dial("tcp", m.inboundAddr(8080), bad); err == nil {
			c.Close()
			t.Error("probe authorizing only the client ID accepted the web sidecar")
		}
	})

	t.Run("tcp through mTLS", func(t *testing.T) {
		got, err := tcpRoundTrip(fmt.Sprintf("127.0.0.1:%d", m.client.UpstreamPorts["raw.default.svc.cluster.local:9000"]), "ping")
		if err != nil || got != "ping" {
			t.Fatalf("tcp echo through sidecars: %q %v", got, err)
		}
	})

	t.Run("telemetry sees mutual TLS and the peers' principals", func(t *testing.T) {
		mtls := map[string]string{"reporter": "destination", "connection_security_policy": "mutual_tls",
			"source_principal": clientID.String(), "destination_principal": webID.String(), "source_workload": m.client.Workload.Name}
		waitFor(t, "tcp close counted", func() bool {
			_, body := m.webPx.get(t, "/stats/prometheus")
			return counterValueText(t, body, "istio_tcp_connections_closed_total", mtls) >= 0 &&
				strings.Contains(body, "istio_tcp_connections_closed_total{")
		})
		_, body := m.webPx.get(t, "/stats/prometheus")
		if got := counterValueText(t, body, "istio_requests_total", mtls); got < 1 {
			t.Errorf("istio_requests_total%v = %v, want >= 1\n%s", mtls, got, grep(body, "istio_requests_total{"))
		}
		// TCP: the sidecars exchanged metadata in-band after negotiating ALPN
		// skein-peer-exchange, so both sides know the peer workload.
		tcp := map[string]string{"reporter": "destination", "connection_security_policy": "mutual_tls",
			"source_principal": clientID.String(), "destination_principal": webID.String(), "request_protocol": "tcp",
			"source_workload_namespace": "default", "source_workload": "client", "source_app": "client"}
		if got := counterValueText(t, body, "istio_tcp_connections_closed_total", tcp); got < 1 {
			t.Errorf("istio_tcp_connections_closed_total%v = %v, want >= 1\n%s", tcp, got, grep(body, "istio_tcp_connections_closed_total{"))
		}
		// The source reporter: its own principal as source, the peer's as destination.
		_, cbody := m.clientPx.get(t, "/stats/prometheus")
		tcpSrc := map[string]string{"reporter": "source", "request_protocol": "tcp", "source_principal": clientID.String(),
			"destination_principal": webID.String(), "destination_workload_namespace": "default", "destination_workload": "web"}
		for _, family := range []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"} {
			if got := counterValueText(t, cbody, family, tcpSrc); got < 1 {
				t.Errorf("%s%v = %v, want >= 1\n%s", family, tcpSrc, got, grep(cbody, family+"{"))
			}
		}
		src := map[string]string{"reporter": "source", "source_principal": clientID.String(), "destination_principal": webID.String(), "destination_workload": "web"}
		if got := counterValueText(t, cbody, "istio_requests_total", src); got < 1 {
			t.Errorf("istio_requests_total%v = %v, want >= 1\n%s", src, got, grep(cbody, "istio_requests_total{"))
		}
	})

	t.Run("PERMISSIVE accepts plaintext and mTLS, strips forged XFCC", func(t *testing.T) {
		code, r, err := plainGet(m.inboundAddr(8080))
		if err != nil || code != 200 {
			t.Fatalf("plaintext to PERMISSIVE: %d %v", code, err)
		}
		if got := xfcc(r); got != "" {
			t.Errorf("plaintext request reached the app with x-forwarded-client-cert %q, want none", got)
		}
		if got, err := tcpRoundTrip(m.inboundAddr(9000), "plain"); err != nil || got != "plain" {
			t.Errorf("plaintext TCP to PERMISSIVE: %q %v", got, err)
		}
		if code, _, err := m.viaClient(t, client, "/"); err != nil || code != 200 {
			t.Errorf("mTLS after plaintext: %d %v", code, err)
		}
	})

	t.Run("STRICT refuses plaintext and TLS without a mesh certificate", func(t *testing.T) {
		m.setPolicies(&model.PeerAuthentication{NamespacedName: model.NamespacedName{Namespace: "istio-system", Name: "default"}, Mode: model.MTLSStrict})
		if code, _, err := plainGet(m.inboundAddr(8080)); err == nil {
			t.Errorf("plaintext HTTP to STRICT got %d, want the connection refused", code)
		}
		if got, err := tcpRoundTrip(m.inboundAddr(9000), "plain"); err == nil {
			t.Errorf("plaintext TCP to STRICT echoed %q, want the connection closed", got)
		}
		noCert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		if c, err := tls.Dial("tcp", m.inboundAddr(8080), noCert); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if _, rerr := bufio.NewReader(c).ReadString('\n'); rerr == nil {
				t.Error("TLS without a client certificate was served by a STRICT port")
			}
			c.Close()
		}
		code, r, err := m.viaClient(t, client, "/strict")
		if err != nil || code != 200 || !strings.Contains(xfcc(r), "URI="+clientID.String()) {
			t.Errorf("mTLS to STRICT: %d %v xfcc %q", code, err, xfcc(r))
		}
		if got, err := tcpRoundTrip(fmt.Sprintf("127.0.0.1:%d", m.client.UpstreamPorts["raw.default.svc.cluster.local:9000"]), "strict"); err != nil || got != "strict" {
			t.Errorf("tcp through mTLS to STRICT: %q %v", got, err)
		}
	})

	t.Run("port-level DISABLE turns auto-mTLS off for that port only", func(t *testing.T) {
		m.setPolicies(
			&model.PeerAuthentication{NamespacedName: model.NamespacedName{Namespace: "istio-system", Name: "default"}, Mode: model.MTLSStrict},
			&model.PeerAuthentication{NamespacedName: model.NamespacedName{Namespace: "default", Name: "web"}, Selector: map[string]string{"app": "web"},
				PortLevel: map[int]model.MTLSMode{8080: model.MTLSDisable}},
		)
		code, r, err := m.viaClient(t, client, "/disabled")
		if err != nil || code != 200 || xfcc(r) != "" {
			t.Errorf("client to DISABLE port: %d %v xfcc %q (want plaintext: no XFCC)", code, err, xfcc(r))
		}
		if code, _, err := plainGet(m.inboundAddr(8080)); err != nil || code != 200 {
			t.Errorf("plaintext to DISABLE port: %d %v", code, err)
		}
		if _, err := tcpRoundTrip(m.inboundAddr(9000), "plain"); err == nil {
			t.Error("port 9000 should still be STRICT")
		}
	})
}

// TestCertRotationUnderLoad runs steady traffic through both sidecars (new and
// kept-alive connections, HTTP and TCP) while 2-second certificates rotate several
// times, then while the root rotates with overlap: no request may fail.
func TestCertRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation under load takes ~15s")
	}
	m := startSecureMesh(t, 2*time.Second)
	serial := func(px *runningProxy) (string, string) {
		_, body := px.get(t, "/certs")
		var c admin.Certs
		_ = json.Unmarshal([]byte(body), &c)
		if c.Workload == nil {
			return "", ""
		}
		return c.Workload.Serial, c.Workload.Issuer
	}

	ctx, stop := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var wg sync.WaitGroup
	keepAlive := m.proxyClient()
	fresh := m.proxyClient()
	fresh.Transport.(*http.Transport).DisableKeepAlives = true
	for i := range 3 {
		c := keepAlive
		if i == 2 {
			c = fresh
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				code, _, err := m.viaClient(t, c, "/load")
				switch {
				case err != nil:
					fail(err)
				case code != 200:
					fail(fmt.Errorf("status %d", code))
				default:
					ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Go(func() { // one long TCP connection through mTLS across rotations
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.client.UpstreamPorts["raw.default.svc.cluster.local:9000"]))
		if err != nil {
			fail(err)
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for i := 0; ctx.Err() == nil; i++ {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := "tcp-" + strconv.Itoa(i)
			if _, err := io.WriteString(c, msg+"\n"); err != nil {
				fail(err)
				return
			}
			line, err := r.ReadString('\n')
			if err != nil || strings.TrimSpace(line) != msg {
				fail(fmt.Errorf("tcp echo %q: %v", line, err))
				return
			}
			ok.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	})

	// Leaf rotation: each sidecar renews at half-life; wait for three new certificates.
	seen := map[string]bool{}
	first, _ := serial(m.webPx)
	seen[first] = true
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < 4 && time.Now().Before(deadline) {
		s, _ := serial(m.webPx)
		seen[s] = true
		time.Sleep(100 * time.Millisecond)
	}
	if len(seen) < 4 {
		t.Errorf("web sidecar rotated %d times in 20s, want 3", len(seen)-1)
	}

	// Root rotation with overlap: bundle with both roots first, then the new root signs.
	oldRoot := m.ca.SigningCert()
	if err := m.ca.PrepareRootRotation(); err != nil {
		t.Fatal(err)
	}
	m.push()
	m.waitInSync()
	if err := m.ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	m.push()
	m.waitInSync()
	newIssuer := m.ca.SigningCert().Subject.String()
	waitFor(t, "both sidecars on the new root", func() bool {
		_, a := serial(m.webPx)
		_, b := serial(m.clientPx)
		return a == newIssuer && b == newIssuer && m.ca.SigningCert() != oldRoot
	})
	waitFor(t, "old-root certificates expired", func() bool { return time.Now().After(m.ca.PreviousRootsValidUntil()) })
	if err := m.ca.DropPreviousRoots(); err != nil {
		t.Fatal(err)
	}
	m.push()
	m.waitInSync()
	time.Sleep(2 * time.Second) // more traffic and one more renewal on the new root alone

	stop()
	wg.Wait()
	t.Logf("%d successful requests and TCP echoes, %d failed, across %d leaf rotations and a root rotation", ok.Load(), failed.Load(), len(seen)-1)
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Errorf("%d failed (first: %v), %d ok; want 0 failed", failed.Load(), firstErr.Load(), ok.Load())
	}
}

// TestMeshMTLSWithPluginCA: with Istio's plug-in layout (an intermediate signs, the
// root stays offline), sidecars present leaf + intermediate and verify each other
// against the root alone.
func TestMeshMTLSWithPluginCA(t *testing.T) {
	pki := newTestPKI(t) // its CA is the offline root
	inter, interKey := pki.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "istio intermediate"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, pki.cert, pki.key)
	dir := t.TempDir()
	keyDER, _ := x509.MarshalPKCS8PrivateKey(interKey)
	for name, blocks := range map[string][]*pem.Block{
		"root-cert.pem":  {{Type: "CERTIFICATE", Bytes: pki.cert.Raw}},
		"ca-cert.pem":    {{Type: "CERTIFICATE", Bytes: inter.Raw}},
		"cert-chain.pem": {{Type: "CERTIFICATE", Bytes: inter.Raw}, {Type: "CERTIFICATE", Bytes: pki.cert.Raw}},
		"ca-key.pem":     {{Type: "PRIVATE KEY", Bytes: keyDER}},
	} {
		var b []byte
		for _, blk := range blocks {
			b = append(b, pem.EncodeToMemory(blk)...)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := startSecureMeshIn(t, dir, time.Hour)
	if !m.ca.Plugin() {
		t.Fatal("CA did not load the plug-in files")
	}
	code, r, err := m.viaClient(t, m.proxyClient(), "/plugin")
	if err != nil || code != 200 || !strings.HasSuffix(xfcc(r), "URI="+clientID.String()) {
		t.Fatalf("client → web with a plug-in CA: %d %v xfcc %q", code, err, xfcc(r))
	}
	svid, bundle := m.probeSVID(t, "default", "probe")
	conn, err := tls.Dial("tcp", m.inboundAddr(8080), tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(webID)))
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	defer conn.Close()
	chain := conn.ConnectionState().PeerCertificates
	if len(chain) != 2 || !chain[1].Equal(inter) {
		t.Errorf("web sidecar sent %d certificates, want leaf + the plug-in intermediate", len(chain))
	}
}
