package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// testPKI is a CA that signs server and client certificates, written to files as a
// DestinationRule's caCertificates / clientCertificate / privateKey would name them.
type testPKI struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.cert, p.key = p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	p.write(t, "ca.pem", "CERTIFICATE", p.cert.Raw)
	return p
}

func (p *testPKI) issue(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.BasicConstraintsValid = true
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) leaf(t *testing.T, dns string, client bool) tls.Certificate {
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	c, k := p.issue(t, &x509.Certificate{DNSNames: []string{dns}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}, p.cert, p.key)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

// startTLSBackend is an HTTPS server with a certificate for dns; with clientCAs it
// requires a client certificate from them.
func startTLSBackend(t *testing.T, name string, cert tls.Certificate, clientCAs *x509.CertPool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := echoReply{Backend: name, Host: r.Host, Proto: r.Proto, Header: r.Header}
		if len(r.TLS.PeerCertificates) > 0 {
			reply.Path = "client=" + r.TLS.PeerCertificates[0].DNSNames[0]
		}
		_ = json.NewEncoder(w).Encode(reply)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestTLSOriginationFromFiles: what a DestinationRule with tls mode SIMPLE or MUTUAL
// becomes (files named by caCertificates, clientCertificate, privateKey), against real
// HTTPS servers: the server certificate is verified against the CA file and the
// subject alt names; MUTUAL presents the client certificate.
func TestTLSOriginationFromFiles(t *testing.T) {
	pki := newTestPKI(t)
	clientCert := pki.leaf(t, "client.example.com", true)
	certFile := pki.write(t, "client.pem", "CERTIFICATE", clientCert.Certificate[0])
	keyDER, _ := x509.MarshalPKCS8PrivateKey(clientCert.PrivateKey)
	keyFile := pki.write(t, "client-key.pem", "PRIVATE KEY", keyDER)
	caFile := filepath.Join(pki.dir, "ca.pem")
	pool := x509.NewCertPool()
	pool.AddCert(pki.cert)

	simpleAddr := startTLSBackend(t, "simple", pki.leaf(t, "web.example.com", false), nil)
	mutualAddr := startTLSBackend(t, "mutual", pki.leaf(t, "web.example.com", false), pool)

	file := func(p string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	originate := func(name, san string, mutual bool) *clusterv3.Cluster {
		c := edsCluster(t, name, false, clusterv3.Cluster_ROUND_ROBIN)
		common := &tlsv3.CommonTlsContext{
			AlpnProtocols: []string{"http/1.1"},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(caFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}}}},
			}},
		}
		if mutual {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: file(certFile), PrivateKey: file(keyFile)}}
		}
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "web.example.com", CommonTlsContext: common})}}
		return c
	}
	cp := startControlPlane(t)
	px := startProxy(t, cp)
	httpAddr := freeAddr(t)
	route := func(prefix, cluster string) *routev3.Route {
		return &routev3.Route{Name: cluster, Match: prefixMatch(prefix), Action: toCluster(cluster)}
	}
	cp.set(t, snapshot{
		listeners: []types.Resource{httpListener(t, "outbound_http_proxy", httpAddr, "outbound_http_proxy")},
		routes: []types.Resource{&routev3.RouteConfiguration{Name: "outbound_http_proxy", VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{route("/simple", "simple"), route("/mutual-no-cert", "mutual-no-cert"), route("/mutual", "mutual"), route("/wrong-san", "wrong-san")},
		}}}},
		clusters: []types.Resource{
			originate("simple", "web.example.com", false),
			originate("mutual", "web.example.com", true),
			originate("mutual-no-cert", "web.example.com", false),
			originate("wrong-san", "db.example.com", false),
		},
		endpoints: []types.Resource{
			endpoints("simple", simpleAddr), endpoints("mutual", mutualAddr),
			endpoints("mutual-no-cert", mutualAddr), endpoints("wrong-san", simpleAddr),
		},
	})
	px.waitVersion(t, cp)

	for _, tc := range []struct {
		path        string
		wantCode    int
		wantBackend string
		wantClient  string
	}{
		{"/simple", 200, "simple", ""},
		{"/mutual", 200, "mutual", "client=client.example.com"},
		{"/mutual-no-cert", 503, "", ""},
		{"/wrong-san", 503, "", ""},
	} {
		code, r := request(t, http.DefaultClient, "GET", fmtURL(httpAddr, tc.path), "web", nil)
		if code != tc.wantCode || r.Backend != tc.wantBackend || r.Path != tc.wantClient {
			t.Errorf("GET %s: %d backend %q %q, want %d %q %q", tc.path, code, r.Backend, r.Path, tc.wantCode, tc.wantBackend, tc.wantClient)
		}
	}
}
