package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"skein.dev/skein/internal/echo"
)

// gwSuite is one running mesh shared by every gateway case (starting it is most of the
// suite's time), and the clients that reach its gateway listeners from the host.
type gwSuite struct {
	m     *mesh
	env   gatewayEnv
	roots *x509.CertPool
	plain *http.Client
}

// answer is what a client got: the status and, when a backend answered, what that
// backend saw (skein echo's JSON).
type answer struct {
	status   int
	header   http.Header
	backend  string // workload name; "" when the gateway answered itself
	path     string
	host     string
	headers  map[string]string
	certName string // TLS: the leaf certificate's first DNS name the client was shown
}

type req struct {
	port    int
	host    string
	method  string
	path    string
	headers map[string]string
	https   bool   // TLS to the listener, SNI = sni (or host)
	sni     string // TLS server name, when it differs from host
}

func (s *gwSuite) do(t *testing.T, r req) answer {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	scheme := "http"
	client := s.plain
	var seen string
	if r.https {
		scheme = "https"
		sni := r.sni
		if sni == "" {
			sni = r.host
		}
		client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: s.roots, VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].DNSNames) > 0 {
					seen = cs.PeerCertificates[0].DNSNames[0]
				}
				return nil
			}},
			DisableKeepAlives: true,
		}}
	}
	hr, err := http.NewRequest(r.method, fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, r.port, r.path), nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.Host = r.host
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v\n%s", r.method, hr.URL, r.host, err, s.m.logs())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, certName: seen}
	var e struct {
		Workload string            `json:"workload"`
		Path     string            `json:"path"`
		Host     string            `json:"host"`
		Headers  map[string]string `json:"headers"`
	}
	if json.Unmarshal(body, &e) == nil {
		a.backend, a.path, a.host, a.headers = e.Workload, e.Path, e.Host, e.Headers
	}
	return a
}

// expect checks the status and, when backend is not empty, which backend answered.
func (s *gwSuite) expect(t *testing.T, r req, status int, backend string) answer {
	t.Helper()
	a := s.do(t, r)
	if a.status != status || a.backend != backend {
		t.Errorf("%s %s%s on :%d: got %d from %q, want %d from %q", r.method, r.host, r.path, r.port, a.status, a.backend, status, backend)
	}
	return a
}

func startGatewaySuite(t *testing.T) *gwSuite {
	env, dir := newGatewayEnv(t)
	s := &gwSuite{env: env, roots: x509.NewCertPool(), plain: &http.Client{Timeout: 10 * time.Second}}
	s.roots.AppendCertsFromPEM(env.CAPEM)
	s.m = startMesh(t, dir)
	// The gateway proxy is ready when its listener answers with the route config in.
	// Each Gateway has its own proxy: wait until both answer with their routes in.
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range []req{{port: env.HTTP, host: "match.example.com", path: "/"}, {port: env.HostPort, host: "bar.com", path: "/"}} {
		for s.do(t, r).status != http.StatusOK && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

// TestGatewayAPI runs the Gateway API cases against one mesh: real requests from the
// host to the gateway proxy's listeners, checked against what the echo backends saw.
func TestGatewayAPI(t *testing.T) {
	s := startGatewaySuite(t)
	e := s.env
	const v1, v2, v3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
	m := func(path string) req { return req{port: e.HTTP, host: "match.example.com", path: path} }

	t.Run("matching", func(t *testing.T) {
		cases := []struct {
			name    string
			r       req
			backend string
		}{
			{"prefix / is the fallback", m("/"), v1},
			{"prefix /v2 matches /v2", m("/v2"), v2},
			{"prefix /v2 matches /v2/ and below", m("/v2/example"), v2},
			{"prefix /v2 does not match /v2example (path elements)", m("/v2example"), v1},
			{"exact /exact", m("/exact"), v3},
			{"exact /exact does not match /exact/", m("/exact/"), v1},
			{"regular expression", m("/regex/123"), v3},
			{"regular expression matches whole path only", m("/regex/123x"), v1},
			{"prefix with trailing slash matches without it", m("/trailing"), v2},
			{"prefix with trailing slash matches below", m("/trailing/x"), v2},
			{"header exact", req{port: e.HTTP, host: "match.example.com", path: "/", headers: map[string]string{"version": "two"}}, v2},
			{"header names are case-insensitive", req{port: e.HTTP, host: "match.example.com", path: "/", headers: map[string]string{"VERSION": "one"}}, v1},
			{"more headers win", req{port: e.HTTP, host: "match.example.com", path: "/", headers: map[string]string{"version": "two", "color": "orange"}}, v3},
			{"header regular expression", req{port: e.HTTP, host: "match.example.com", path: "/", headers: map[string]string{"user": "admin"}}, v3},
			{"header regular expression miss", req{port: e.HTTP, host: "match.example.com", path: "/", headers: map[string]string{"user": "Admin"}}, v1},
			{"method POST", req{port: e.HTTP, host: "match.example.com", method: http.MethodPost, path: "/"}, v2},
			{"path+method beats method alone", req{port: e.HTTP, host: "match.example.com", method: http.MethodGet, path: "/method"}, v3},
			{"longest prefix across routes", req{port: e.HTTP, host: "across.example.com", path: "/longer/prefix/x"}, v2},
			{"tie broken by route name", req{port: e.HTTP, host: "across.example.com", path: "/tie"}, v1},
			{"tie broken by creation time first", req{port: e.HTTP, host: "across.example.com", path: "/old"}, v3},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := s.expect(t, c.r, http.StatusOK, c.backend)
				if a.path != c.r.path {
					t.Errorf("backend saw path %q, want %q", a.path, c.r.path)
				}
			})
		}
	})

	t.Run("hostnames", func(t *testing.T) {
		h := func(port int, host string) req { return req{port: port, host: host, path: "/"} }
		cases := []struct {
			name    string
			r       req
			status  int
			backend string
		}{
			{"wildcard route hostname", h(e.HTTP, "a.wild.com"), 200, v1},
			{"wildcard matches several labels", h(e.HTTP, "a.b.wild.com"), 200, v1},
			{"exact hostname beats wildcard", h(e.HTTP, "exact.wild.com"), 200, v2},
			{"wildcard does not match the bare domain", h(e.HTTP, "wild.com"), 404, ""},
			{"Host with port", h(e.HTTP, "exact.wild.com:"+strconv.Itoa(e.HTTP)), 200, v2},
			{"unknown host is 404", h(e.HTTP, "nobody.example.org"), 404, ""},
			{"listener bar.com", h(e.HostPort, "bar.com"), 200, v1},
			{"listener foo.bar.com", h(e.HostPort, "foo.bar.com"), 200, v2},
			{"listener *.bar.com", h(e.HostPort, "baz.bar.com"), 200, v3},
			{"listener *.foo.com", h(e.HostPort, "bar.foo.com"), 200, v3},
			{"no listener for foo.com", h(e.HostPort, "foo.com"), 404, ""},
			{"intersection keeps the route's narrower name", h(e.HostPort, "very.specific.bar.com"), 200, v1},
			{"intersection drops names outside the listener", h(e.HostPort, "x.other.com"), 404, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := s.expect(t, c.r, c.status, c.backend)
				if c.status == 200 && a.host != c.r.host {
					t.Errorf("backend saw Host %q, want %q", a.host, c.r.host)
				}
			})
		}
	})

	t.Run("spec.addresses binds the listener there", func(t *testing.T) {
		// Same port as the listener on 127.0.0.1, another Gateway, another address.
		hr, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.2:%d/", e.HTTP), nil)
		hr.Host = "anything"
		resp, err := s.plain.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct{ Workload string }
		_ = json.NewDecoder(resp.Body).Decode(&got)
		if resp.StatusCode != 200 || got.Workload != v3 {
			t.Errorf("127.0.0.2: %d from %q, want 200 from %s", resp.StatusCode, got.Workload, v3)
		}
		out, err := s.m.skein("get", "gateway", "addressed", "-n", "gw", "-o", "yaml")
		if err != nil || !strings.Contains(out, "value: 127.0.0.2") {
			t.Errorf("status addresses: %v\n%s", err, out)
		}
	})

	t.Run("weights", func(t *testing.T) {
		w := func(path string) req { return req{port: e.HTTP, host: "weights.example.com", path: path} }
		t.Run("weight 0 gets nothing", func(t *testing.T) {
			for i := 0; i < 20; i++ {
				s.expect(t, w("/zero"), 200, v1)
			}
		})
		t.Run("all weights 0 is 500", func(t *testing.T) {
			s.expect(t, w("/allzero"), 500, "")
		})
		t.Run("50/30/20 split reaches every backend in proportion", func(t *testing.T) {
			seen := map[string]int{}
			const n = 200
			for i := 0; i < n; i++ {
				seen[s.do(t, w("/split")).backend]++
			}
			for b, want := range map[string]float64{v1: 0.5, v2: 0.3, v3: 0.2} {
				got := float64(seen[b]) / n
				if got < want-0.15 || got > want+0.15 {
					t.Errorf("%s got %.2f of requests, want about %.2f (%v)", b, got, want, seen)
				}
			}
		})
	})

	t.Run("backendRefs", func(t *testing.T) {
		inv := func(path string) req { return req{port: e.HTTP, host: "invalid.example.com", path: path} }
		t.Run("nonexistent Service is 500", func(t *testing.T) { s.expect(t, inv("/not-found"), 500, "") })
		t.Run("unknown kind is 500", func(t *testing.T) { s.expect(t, inv("/unknown-kind"), 500, "") })
		t.Run("cross-namespace without ReferenceGrant is 500", func(t *testing.T) { s.expect(t, inv("/cross-ns"), 500, "") })
		t.Run("Service port that does not exist is 500", func(t *testing.T) { s.expect(t, inv("/wrong-port"), 500, "") })
		t.Run("rule without backendRefs is 500", func(t *testing.T) { s.expect(t, inv("/no-backends"), 500, "") })
		t.Run("invalid share of weights is 500, the rest served", func(t *testing.T) {
			codes := map[int]int{}
			for i := 0; i < 60; i++ {
				a := s.do(t, inv("/partial"))
				codes[a.status]++
				if a.status == 200 && a.backend != v1 {
					t.Errorf("200 from %q, want %s", a.backend, v1)
				}
			}
			if codes[200] == 0 || codes[500] == 0 || codes[200]+codes[500] != 60 {
				t.Errorf("status counts %v, want both 200 and 500 only", codes)
			}
		})
		t.Run("cross-namespace with ReferenceGrant", func(t *testing.T) {
			s.expect(t, req{port: e.HTTP, host: "granted.example.com", path: "/"}, 200, "app-backend")
		})
	})

	t.Run("timeouts", func(t *testing.T) {
		slow := map[string]string{echo.HeaderLatency: "2s"}
		t.Run("request timeout is 504", func(t *testing.T) {
			s.expect(t, req{port: e.HTTP, host: "timeout.example.com", path: "/request", headers: slow}, 504, "")
		})
		t.Run("backendRequest timeout is 504", func(t *testing.T) {
			s.expect(t, req{port: e.HTTP, host: "timeout.example.com", path: "/backend", headers: slow}, 504, "")
		})
		t.Run("fast request within the timeout", func(t *testing.T) {
			s.expect(t, req{port: e.HTTP, host: "timeout.example.com", path: "/request"}, 200, v1)
		})
	})

	t.Run("allowedRoutes", func(t *testing.T) {
		t.Run("namespace selector admits a labeled namespace", func(t *testing.T) {
			s.expect(t, req{port: e.Selector, host: "any", path: "/"}, 200, "app-backend")
		})
		t.Run("Same admits the gateway's namespace only", func(t *testing.T) {
			s.expect(t, req{port: e.SameNS, host: "any", path: "/"}, 200, v2)
		})
		t.Run("status says NotAllowedByListeners", func(t *testing.T) {
			out, err := s.m.skein("get", "httproute", "web-route", "-n", "web", "-o", "yaml")
			if err != nil || strings.Count(out, "reason: NotAllowedByListeners") != 2 {
				t.Errorf("skein get httproute web-route: %v\n%s", err, out)
			}
		})
		t.Run("status says NoMatchingParent for an unknown sectionName", func(t *testing.T) {
			out, err := s.m.skein("get", "httproute", "no-such-listener", "-n", "gw", "-o", "yaml")
			if err != nil || !strings.Contains(out, "reason: NoMatchingParent") {
				t.Errorf("skein get httproute no-such-listener: %v\n%s", err, out)
			}
		})
	})

	t.Run("tls", func(t *testing.T) {
		t.Run("HTTPS terminated with the Secret's certificate", func(t *testing.T) {
			a := s.expect(t, req{port: e.HTTPS, host: "secure.example.com", path: "/s", https: true}, 200, v1)
			if a.certName != "example.com" {
				t.Errorf("certificate for %q, want the *.example.com one", a.certName)
			}
			if a.headers["x-forwarded-proto"] != "https" {
				t.Errorf("backend saw x-forwarded-proto %q, want https", a.headers["x-forwarded-proto"])
			}
		})
		t.Run("SNI picks the second listener's certificate", func(t *testing.T) {
			a := s.expect(t, req{port: e.HTTPS, host: "second.example.org", path: "/", https: true}, 200, v2)
			if a.certName != "second.example.org" {
				t.Errorf("certificate for %q, want second.example.org", a.certName)
			}
		})
		t.Run("certificate from another namespace with ReferenceGrant", func(t *testing.T) {
			a := s.expect(t, req{port: e.HTTPS, host: "cross.example.net", path: "/", https: true}, 200, v3)
			if a.certName != "cross.example.net" {
				t.Errorf("certificate for %q, want cross.example.net", a.certName)
			}
		})
		t.Run("Host of another listener on the same connection is 421", func(t *testing.T) {
			s.expect(t, req{port: e.HTTPS, host: "second.example.org", sni: "secure.example.com", path: "/", https: true}, 421, "")
		})
		t.Run("Host covered by the certificate without a route is 404", func(t *testing.T) {
			s.expect(t, req{port: e.HTTPS, host: "nothing.example.com", path: "/", https: true}, 404, "")
		})
		t.Run("TLSRoute passthrough reaches the backend's own certificate", func(t *testing.T) {
			a := s.do(t, req{port: e.Pass, host: "pass.example.com", path: "/p", https: true})
			if a.status != 200 || a.backend != "tls-backend" || a.certName != "pass.example.com" {
				t.Errorf("passthrough: %d from %q with certificate %q, want 200 from tls-backend with pass.example.com", a.status, a.backend, a.certName)
			}
		})
		t.Run("passthrough with an unknown SNI is refused", func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Pass)),
				&tls.Config{ServerName: "other.example.com", RootCAs: s.roots})
			if err == nil {
				c.Close()
				t.Errorf("TLS handshake with SNI other.example.com succeeded, want the connection closed")
			}
		})
	})

	t.Run("tcp", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.TCP)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "hello gateway\n"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "hello gateway\n" {
			t.Errorf("TCPRoute echo: %q, %v", line, err)
		}
	})

	t.Run("grpc", func(t *testing.T) {
		conn, err := grpc.NewClient(net.JoinHostPort("127.0.0.1", strconv.Itoa(e.HTTP)),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("grpc.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		t.Run("exact service and method", func(t *testing.T) {
			resp, err := echo.CallGRPC(ctx, conn, map[string]any{"message": "hi"})
			if err != nil || resp["workload"] != v1 {
				t.Errorf("Echo through the gateway: %v %v", resp, err)
			}
		})
		t.Run("unmatched method is UNIMPLEMENTED", func(t *testing.T) {
			_, err := echo.StreamGRPC(ctx, conn, map[string]any{"count": 1})
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("Stream through the gateway: %v, want Unimplemented (no route)", err)
			}
		})
		t.Run("regular expression service and method", func(t *testing.T) {
			msgs, err := echo.StreamGRPC(metadata.AppendToOutgoingContext(ctx, "x-regex", "yes"), conn, map[string]any{"count": 3})
			if err != nil || len(msgs) != 3 {
				t.Errorf("Stream matched by regex: %d messages, %v", len(msgs), err)
			}
		})
		t.Run("service match with header", func(t *testing.T) {
			hctx := metadata.AppendToOutgoingContext(ctx, "x-health", "yes")
			hr, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{})
			if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health with header: %v %v", hr, err)
			}
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
				t.Errorf("health without header: %v, want Unimplemented", err)
			}
		})
	})

	t.Run("filters", func(t *testing.T) {
		hd := func(path string, h map[string]string) req {
			return req{port: e.HTTP, host: "headers.example.com", path: path, headers: h}
		}
		t.Run("request header set, add, remove", func(t *testing.T) {
			a := s.expect(t, hd("/request", map[string]string{"X-Header-Set": "original", "X-Header-Add": "original", "X-Header-Remove": "gone"}), 200, v1)
			if a.headers["x-header-set"] != "set-overwrites-values" || a.headers["x-header-remove"] != "" {
				t.Errorf("backend saw %v", a.headers)
			}
		})
		t.Run("request header add appends", func(t *testing.T) {
			// echo shows a header's first value; add appends after the client's.
			a := s.expect(t, hd("/request", nil), 200, v1)
			if a.headers["x-header-add"] != "add-appends-values" {
				t.Errorf("backend saw x-header-add %q", a.headers["x-header-add"])
			}
		})
		t.Run("response header set and add", func(t *testing.T) {
			a := s.expect(t, hd("/response", nil), 200, v1)
			if a.header.Get("X-Header-Set") != "set-overwrites-values" || a.header.Get("X-Header-Add") != "add-appends-values" {
				t.Errorf("response headers %v", a.header)
			}
		})
		t.Run("backendRef request header modifier", func(t *testing.T) {
			for i := 0; i < 20; i++ {
				a := s.do(t, hd("/backend-headers", nil))
				want := map[string]string{v1: "v1", v2: "v2"}[a.backend]
				if a.status != 200 || want == "" || a.headers["x-backend"] != want {
					t.Fatalf("%d from %q with x-backend %q", a.status, a.backend, a.headers["x-backend"])
				}
			}
		})
		t.Run("query parameter exact", func(t *testing.T) { s.expect(t, hd("/query?animal=whale", nil), 200, v2) })
		t.Run("query parameter regular expression", func(t *testing.T) { s.expect(t, hd("/query?color=blue", nil), 200, v3) })
		t.Run("query parameter miss", func(t *testing.T) { s.expect(t, hd("/query?animal=dolphin", nil), 200, v1) })

		rd := func(path string) req { return req{port: e.HTTP, host: "redirect.example.com", path: path} }
		port := strconv.Itoa(e.HTTP)
		redirects := []struct {
			name, path, location string
			status               int
		}{
			{"scheme https drops the port", "/scheme", "https://redirect.example.com/scheme", 302},
			{"hostname keeps the listener's port", "/hostname", "http://example.org:" + port + "/hostname", 302},
			{"port", "/port", "http://redirect.example.com:8443/port", 302},
			{"status code 301", "/status", "http://redirect.example.com:" + port + "/status", 301},
			{"ReplaceFullPath", "/full/deep", "http://redirect.example.com:" + port + "/replaced", 302},
			{"ReplacePrefixMatch", "/prefix/one?q=1", "http://redirect.example.com:" + port + "/replaced/one?q=1", 302},
			{"ReplacePrefixMatch on the prefix itself", "/prefix", "http://redirect.example.com:" + port + "/replaced", 302},
			{"everything at once", "/all/x", "https://example.org:8443/x", 308},
		}
		noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, c := range redirects {
			t.Run("redirect "+c.name, func(t *testing.T) {
				r := rd(c.path)
				hr, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", r.port, r.path), nil)
				hr.Host = r.host
				resp, err := noFollow.Do(hr)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
					t.Errorf("%d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
				}
			})
		}

		// The spec's ReplacePrefixMatch table (HTTPPathModifier).
		rewrites := []struct{ name, path, want string }{
			{"/foo/bar with /foo -> /xyz", "/foo/bar", "/xyz/bar"},
			{"/foo with /foo -> /xyz", "/foo", "/xyz"},
			{"/foo/ with /foo -> /xyz", "/foo/", "/xyz/"},
			{"/slash/bar with /slash/ -> /xyz/", "/slash/bar", "/xyz/bar"},
			{"/empty/bar with /empty -> empty", "/empty/bar", "/bar"},
			{"/empty/ with /empty -> empty", "/empty/", "/"},
			{"/empty with /empty -> empty", "/empty", "/"},
			{"/root/ with /root -> /", "/root/", "/"},
			{"/root with /root -> /", "/root", "/"},
			{"query kept", "/foo/bar?x=1", "/xyz/bar?x=1"},
		}
		for _, c := range rewrites {
			t.Run("rewrite "+c.name, func(t *testing.T) {
				a := s.expect(t, req{port: e.HTTP, host: "rewrite.example.com", path: c.path}, 200, v1)
				if a.path != c.want {
					t.Errorf("backend saw path %q, want %q", a.path, c.want)
				}
			})
		}
		t.Run("rewrite hostname and full path", func(t *testing.T) {
			a := s.expect(t, req{port: e.HTTP, host: "rewrite.example.com", path: "/full/two"}, 200, v1)
			if a.path != "/one" || a.host != "rewritten.example.org" {
				t.Errorf("backend saw %s%s, want rewritten.example.org/one", a.host, a.path)
			}
		})

		t.Run("CORS preflight from an allowed origin", func(t *testing.T) {
			hr, _ := http.NewRequest(http.MethodOptions, fmt.Sprintf("http://127.0.0.1:%d/cors", e.HTTP), nil)
			hr.Host = "extended.example.com"
			hr.Header.Set("Origin", "https://www.example.org")
			hr.Header.Set("Access-Control-Request-Method", "PUT")
			resp, err := s.plain.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://www.example.org" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") {
				t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
			}
		})
		t.Run("CORS request from an origin not allowed", func(t *testing.T) {
			a := s.expect(t, req{port: e.HTTP, host: "extended.example.com", path: "/cors", headers: map[string]string{"Origin": "https://evil.example.net"}}, 200, v1)
			if a.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("Access-Control-Allow-Origin %q for a foreign origin", a.header.Get("Access-Control-Allow-Origin"))
			}
		})
		t.Run("retry on a listed code", func(t *testing.T) {
			// The backend fails the first attempt of this request id with 500.
			id := fmt.Sprintf("gw-retry-%d", time.Now().UnixNano())
			s.expect(t, req{port: e.HTTP, host: "extended.example.com", path: "/retry", headers: map[string]string{
				"X-Request-Id": id, echo.HeaderFail: "1", echo.HeaderFailStatus: "500"}}, 200, v1)
		})
		t.Run("no retry past attempts", func(t *testing.T) {
			id := fmt.Sprintf("gw-retry-%d", time.Now().UnixNano())
			s.expect(t, req{port: e.HTTP, host: "extended.example.com", path: "/retry", headers: map[string]string{
				"X-Request-Id": id, echo.HeaderFail: "5", echo.HeaderFailStatus: "500"}}, 500, v1) // the backend's own 500, after 3 attempts
		})

		seen := func(t *testing.T, ledger, id string) int {
			t.Helper()
			r := req{port: e.HTTP, host: "ledger", path: echo.SeenPath + "?id=" + id, headers: map[string]string{"x-ledger": ledger}}
			hr, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", r.port, r.path), nil)
			hr.Host = r.host
			hr.Header.Set("x-ledger", ledger)
			resp, err := s.plain.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got echo.Seen
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("ledger of %s: %v", ledger, err)
			}
			return got.Count
		}
		mirrored := func(t *testing.T, path, ledger string) bool {
			t.Helper()
			id := fmt.Sprintf("gw-mirror-%d", time.Now().UnixNano())
			s.expect(t, req{port: e.HTTP, host: "mirror.example.com", path: path, headers: map[string]string{"X-Request-Id": id}}, 200, v1)
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if seen(t, ledger, id) > 0 {
					return true
				}
				time.Sleep(50 * time.Millisecond)
			}
			return false
		}
		t.Run("mirror sends a copy", func(t *testing.T) {
			if !mirrored(t, "/all", "v2") {
				t.Errorf("infra-backend-v2 never saw the mirrored request")
			}
		})
		t.Run("mirror percent 0 sends none", func(t *testing.T) {
			if mirrored(t, "/none", "v2") {
				t.Errorf("infra-backend-v2 saw a request mirrored at 0%%")
			}
		})
		t.Run("mirror fraction 1/2 sends some", func(t *testing.T) {
			copies := 0
			for i := 0; i < 12 && copies == 0; i++ {
				if mirrored(t, "/fraction", "v3") {
					copies++
				}
			}
			if copies == 0 {
				t.Errorf("no request of 12 mirrored at 1/2")
			}
		})
	})

	t.Run("gamma", func(t *testing.T) {
		for _, c := range []struct {
			name, path string
			header     []string
			backend    string
		}{
			{"path rule", "/to-v2/x", nil, v2},
			{"header rule", "/", []string{"-H", "x-to: v3"}, v3},
			{"default rule", "/", nil, v1},
		} {
			t.Run(c.name, func(t *testing.T) {
				args := append([]string{"http://infra-backend-v1.gw:8080" + c.path, "-n", "5"}, c.header...)
				sum := s.m.call("tcp-backend.gw", args...)
				if sum.Status[200] != 5 || sum.Backends[c.backend] != 5 {
					t.Errorf("calls through the sidecar: %+v, want 5 from %s", sum, c.backend)
				}
			})
		}
	})

	t.Run("status", func(t *testing.T) {
		out, err := s.m.skein("get", "gateway", "same-namespace", "-n", "gw", "-o", "yaml")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"reason: Programmed", "value: 127.0.0.1", "name: https-cross", "attachedRoutes: 1", "lastTransitionTime:"} {
			if !strings.Contains(out, want) {
				t.Errorf("skein get gateway -o yaml lacks %q:\n%s", want, out)
			}
		}
		first := out
		// An edit that changes nothing of this Gateway's status keeps its transition times.
		if err := os.WriteFile(filepath.Join(s.m.configDir, "extra.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: unrelated}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(s.m.out.String(), "config accepted (generation 2)") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if again, _ := s.m.skein("get", "gateway", "same-namespace", "-n", "gw", "-o", "yaml"); again != first {
			t.Errorf("status changed after an unrelated edit:\n%s\n---\n%s", first, again)
		}
		out, err = s.m.skein("get", "httproute", "invalid", "-n", "gw", "-o", "yaml")
		if err != nil || !strings.Contains(out, "reason: BackendNotFound") {
			t.Errorf("skein get httproute invalid: %v\n%s", err, out)
		}
		out, err = s.m.skein("get", "grpcroute", "grpc", "-n", "gw", "-o", "yaml")
		if err != nil || strings.Count(out, "reason: Accepted") != 1 || strings.Count(out, "reason: NotAllowedByListeners") != 1 {
			t.Errorf("skein get grpcroute grpc: one parent accepts, the HTTPRoute-only listener does not: %v\n%s", err, out)
		}
		out, err = s.m.skein("get", "gateway", "-A")
		if err != nil || !strings.Contains(out, "other-class") || !strings.Contains(out, "Unknown") {
			t.Errorf("skein get gateway -A: %v\n%s", err, out)
		}
	})
}
