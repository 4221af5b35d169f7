package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/runtime/local/statedir"
)

// securityConfig: an HTTP echo (web), a TCP echo and a client, each with its own
// service account, so every hop has a distinct SPIFFE ID.
const securityConfig = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec:
  serviceAccount: web
  command: ["skein", "echo"]
  ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: tcp-echo, labels: {app: tcp-echo}}
spec:
  serviceAccount: tcp-echo
  command: ["skein", "echo", "--tcp-echo"]
  ports: [{name: tcp, containerPort: 9000}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec:
  serviceAccount: client
  command: ["skein", "echo"]
`

const strictPolicy = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`

// A bad edit of the same policy: an unknown mode. It must be refused with file:line
// and field, and STRICT must stay in force.
const brokenPolicy = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICTEST}
`

var (
	e2eWebID    = spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/web")
	e2eClientID = spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/client")
)

func securityDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(securityConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inbound returns the sidecar inbound address of a workload's replica 0.
func (m *mesh) inbound(workload string) string {
	m.t.Helper()
	st, err := m.status()
	if err != nil {
		m.t.Fatal(err)
	}
	for _, w := range st.Workloads {
		if w.Name == workload && len(w.Replicas) > 0 {
			return w.Replicas[0].Inbound
		}
	}
	m.t.Fatalf("workload %s not in status", workload)
	return ""
}

// applyAndWait writes a config file, waits for the mesh to accept it (generation
// moves) and for every proxy to ACK it.
func (m *mesh) applyAndWait(path, content string) {
	m.t.Helper()
	before, err := m.status()
	if err != nil {
		m.t.Fatal(err)
	}
	writeFile(m.t, path, content)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := m.status()
		if err == nil && st.Generation > before.Generation {
			break
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("config not accepted within 15s: %+v\n%s", st.ConfigErrors, m.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := m.skein("status", "--wait", "30s"); err != nil {
		m.t.Fatalf("mesh not in sync after the edit: %v\n%s", err, out)
	}
}

// viaSidecar sends a request as the client app would: through its sidecar (HTTP_PROXY).
func viaSidecar(env map[string]string, target string) (int, map[string]any, error) {
	proxyURL, err := url.Parse(env["HTTP_PROXY"])
	if err != nil {
		return 0, nil, err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	resp, err := c.Get(target)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body, err
}

func headerOf(body map[string]any, name string) string {
	h, _ := body["headers"].(map[string]any)
	s, _ := h[name].(string)
	return s
}

func plaintextGet(addr string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestMTLSBetweenSidecars: sidecars authenticate each other with SPIFFE X.509 SVIDs;
// an app gets its own SVID from the Workload API with go-spiffe; PeerAuthentication
// PERMISSIVE takes plaintext too, STRICT refuses it; a broken policy edit is refused
// with file:line:field and STRICT stays in force.
func TestMTLSBetweenSidecars(t *testing.T) {
	dir := securityDir(t)
	m := startMesh(t, dir)
	env := m.execEnv("client")
	webInbound := m.inbound("web")

	t.Run("the server sees the client's SPIFFE ID", func(t *testing.T) {
		code, body, err := viaSidecar(env, "http://web:8080/")
		if err != nil || code != 200 {
			t.Fatalf("client → web: %d %v", code, err)
		}
		xfcc := headerOf(body, "x-forwarded-client-cert")
		if !strings.HasPrefix(xfcc, "By="+e2eWebID.String()+";") || !strings.HasSuffix(xfcc, ";URI="+e2eClientID.String()) {
			t.Errorf("x-forwarded-client-cert at web = %q, want By=%s ... URI=%s", xfcc, e2eWebID, e2eClientID)
		}
	})

	t.Run("go-spiffe client gets its SVID from the Workload API and probes the peer", func(t *testing.T) {
		sock := env["SPIFFE_ENDPOINT_SOCKET"]
		if !strings.HasPrefix(sock, "unix://") {
			t.Fatalf("SPIFFE_ENDPOINT_SOCKET = %q", sock)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// The environment variable is what go-spiffe reads by default.
		t.Setenv("SPIFFE_ENDPOINT_SOCKET", sock)
		source, err := workloadapi.NewX509Source(ctx)
		if err != nil {
			t.Fatalf("go-spiffe X509Source over %s: %v", sock, err)
		}
		defer source.Close()
		svid, err := source.GetX509SVID()
		if err != nil || svid.ID != e2eClientID {
			t.Fatalf("Workload API SVID %v (%v), want %s", svid.ID, err, e2eClientID)
		}
		// With that SVID, a Go TLS client sees the web sidecar's SPIFFE ID.
		cfg := tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(e2eWebID))
		conn, err := tls.Dial("tcp", webInbound, cfg)
		if err != nil {
			t.Fatalf("mTLS to the web sidecar with the workload's SVID: %v", err)
		}
		cs := conn.ConnectionState()
		conn.Close()
		id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
		if err != nil || id != e2eWebID || cs.Version != tls.VersionTLS13 {
			t.Errorf("peer %v (%v), TLS version %x; want %s over TLS 1.3", id, err, cs.Version, e2eWebID)
		}
	})

	t.Run("PERMISSIVE by default accepts plaintext from outside the mesh", func(t *testing.T) {
		if code, err := plaintextGet(webInbound); err != nil || code != 200 {
			t.Errorf("plaintext to a PERMISSIVE port: %d %v", code, err)
		}
	})

	policy := filepath.Join(dir, "peer-authentication.yaml")
	t.Run("STRICT refuses plaintext, sidecars keep working", func(t *testing.T) {
		m.applyAndWait(policy, strictPolicy)
		if code, err := plaintextGet(webInbound); err == nil {
			t.Errorf("plaintext to a STRICT port answered %d, want the connection refused", code)
		}
		if _, err := tcpEcho(m.inbound("tcp-echo"), "plain"); err == nil {
			t.Error("plaintext TCP to a STRICT port was served")
		}
		if code, _, err := viaSidecar(env, "http://web:8080/strict"); err != nil || code != 200 {
			t.Errorf("client → web under STRICT: %d %v", code, err)
		}
		if got, err := tcpEcho("127.0.0.1:"+env["TCP_ECHO_SERVICE_PORT"], "ping"); err != nil || got != "ping" {
			t.Errorf("client → tcp-echo under STRICT: %q %v", got, err)
		}
	})

	t.Run("a broken policy is refused and STRICT stays", func(t *testing.T) {
		writeFile(t, policy, brokenPolicy)
		st := waitStatus(t, m, 10*time.Second, func(st statusView) bool { return len(st.ConfigErrors) > 0 })
		msg := strings.Join(st.ConfigErrors, "\n")
		if !strings.Contains(msg, "peer-authentication.yaml:5:") || !strings.Contains(msg, "spec.mtls.mode") || !strings.Contains(msg, "STRICTEST") {
			t.Errorf("error should name file:line and spec.mtls.mode; got:\n%s", msg)
		}
		if code, err := plaintextGet(webInbound); err == nil {
			t.Errorf("after the refused edit plaintext answered %d: STRICT must still be enforced", code)
		}
		if code, _, err := viaSidecar(env, "http://web:8080/"); err != nil || code != 200 {
			t.Errorf("client → web after the refused edit: %d %v", code, err)
		}
	})
}

func tcpEcho(addr, msg string) (string, error) {
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

// TestRotationUnderLoad: 4-second certificates rotate several times under steady
// load, then the root rotates with overlap and the old root is dropped: no request
// may fail.
func TestRotationUnderLoad(t *testing.T) {
	m := startMeshWith(t, securityDir(t), "none", "--cert-ttl", "4s")
	inst, err := statedir.Read(m.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	cl := api.NewClient(inst.API)

	const requests = 3000
	var wg sync.WaitGroup
	var load callSummary
	loadDone := make(chan struct{})
	wg.Go(func() {
		defer close(loadDone)
		load = m.call("client", "http://web:8080/", "-n", fmt.Sprint(requests), "-c", "2", "--interval", "10ms")
	})
	firstExpiry := proxyCertExpiry(t, cl, "web-0.default")
	time.Sleep(6 * time.Second) // three half-lives: at least two renewals per sidecar
	if now := proxyCertExpiry(t, cl, "web-0.default"); !now.After(firstExpiry) {
		t.Errorf("web sidecar certificate not renewed in 6s with a 4s TTL (expiry %v, first %v)", now, firstExpiry)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rotated, err := cl.RotateRoot(ctx)
	if err != nil {
		t.Fatalf("rotate-root: %v", err)
	}
	if len(rotated.Roots) != 2 || rotated.Roots[0].Role != "signing" || rotated.Roots[1].Role != "previous" {
		t.Errorf("roots after rotation: %+v", rotated.Roots)
	}
	if _, err := cl.DropPreviousRoots(ctx, false); err == nil {
		t.Error("dropping previous roots right after the rotation should be refused while old certificates live")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _ := cl.CAStatus(ctx)
		if time.Now().After(st.PreviousRootsValidUntil) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old-root certificates still valid after 20s: %v", st.PreviousRootsValidUntil)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case <-loadDone:
		t.Error("the load ended before the old root was dropped: make it longer")
	default:
	}
	if _, err := cl.DropPreviousRoots(ctx, false); err != nil {
		t.Fatalf("drop-previous-roots: %v", err)
	}
	wg.Wait()
	t.Logf("load across rotations: %+v", load)
	if load.Requests != requests || load.Status[200] != requests || load.Errors != 0 {
		t.Errorf("want %d answers 200 and no errors across leaf and root rotations, got %+v\n%s", requests, load, m.logs())
	}
	if out, err := m.skein("ca", "status"); err != nil || strings.Count(out, "signing") != 1 || strings.Contains(out, "previous ") {
		t.Errorf("skein ca status after drop:\n%s %v", out, err)
	}
}

func proxyCertExpiry(t *testing.T, cl *api.Client, proxyID string) time.Time {
	t.Helper()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Proxies {
		if p.ID == proxyID {
			return p.CertExpiry
		}
	}
	t.Fatalf("proxy %s not in status", proxyID)
	return time.Time{}
}

// TestCredentialIsBoundToItsIdentity: one workload's bootstrap credential cannot
// obtain another workload's identity, nor be used by another proxy.
func TestCredentialIsBoundToItsIdentity(t *testing.T) {
	m := startMesh(t, securityDir(t))
	inst, err := statedir.Read(m.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(m.stateDir, "secrets", "client-0.default", "token"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(m.stateDir, "secrets", "client-0.default", "token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v %v", st.Mode(), err)
	}
	for _, tc := range []struct {
		name, id, proxy, want string
	}{
		{"another identity", "spiffe://cluster.local/ns/default/sa/web", "client-0.default", "PermissionDenied"},
		{"another proxy", "spiffe://cluster.local/ns/default/sa/client", "web-0.default", "Unauthenticated"},
		{"its own identity", "spiffe://cluster.local/ns/default/sa/client", "client-0.default", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := csrProbe(inst.XDS, strings.TrimSpace(string(token)), tc.id, tc.proxy)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CSR for its own identity: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

// csrProbe asks the CA for a certificate as a workload holding token would.
func csrProbe(addr, token, id, proxyID string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, csr, err := ca.GenerateKeyAndCSR(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ca.NewClient(conn).WithProxyID(proxyID).CreateCertificate(ctx, token, csr, 0)
	if err != nil {
		return err
	}
	if len(resp.CertChain) == 0 {
		return fmt.Errorf("empty chain")
	}
	return nil
}
