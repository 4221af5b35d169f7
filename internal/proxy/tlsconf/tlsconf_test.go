package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

type certOpts struct {
	uri     string
	dns     []string
	ip      string
	isCA    bool
	expired bool
}

func makeCert(t *testing.T, o certOpts, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, DNSNames: o.dns,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if o.expired {
		tmpl.NotAfter = now.Add(-time.Minute)
	}
	if o.uri != "" {
		u, _ := url.Parse(o.uri)
		tmpl.URIs = []*url.URL{u}
	}
	if o.ip != "" {
		tmpl.IPAddresses = []net.IP{net.ParseIP(o.ip)}
	}
	if o.isCA {
		tmpl.IsCA, tmpl.KeyUsage, tmpl.Subject = true, x509.KeyUsageCertSign, pkix.Name{CommonName: "root"}
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func exact(t resource.SANType, v string) resource.SANMatcher {
	return resource.SANMatcher{Type: t, Matcher: resource.StringMatcher{Kind: resource.StringExact, Value: v}}
}

func TestVerifier(t *testing.T) {
	root, rootKey := makeCert(t, certOpts{isCA: true}, nil, nil)
	other, otherKey := makeCert(t, certOpts{isCA: true}, nil, nil)
	web, _ := makeCert(t, certOpts{uri: "spiffe://cluster.local/ns/default/sa/web"}, root, rootKey)
	expired, _ := makeCert(t, certOpts{uri: "spiffe://cluster.local/ns/default/sa/web", expired: true}, root, rootKey)
	foreign, _ := makeCert(t, certOpts{uri: "spiffe://cluster.local/ns/default/sa/web"}, other, otherKey)
	wildcard, _ := makeCert(t, certOpts{dns: []string{"*.example.com"}, ip: "10.0.0.1"}, root, rootKey)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	bundle := map[string]*resource.Secret{"ROOTCA": {Name: "ROOTCA", Roots: pool, RootCerts: []*x509.Certificate{root}}}

	mesh := func(sans ...resource.SANMatcher) *resource.Validation {
		return &resource.Validation{RootsSecret: "ROOTCA", SANs: sans}
	}
	tests := []struct {
		name    string
		v       *resource.Validation
		chain   []*x509.Certificate
		wantID  string
		wantErr error
	}{
		{name: "mesh peer, any identity", v: mesh(), chain: []*x509.Certificate{web}, wantID: "spiffe://cluster.local/ns/default/sa/web"},
		{name: "mesh peer, expected identity", v: mesh(exact(resource.SANURI, "spiffe://cluster.local/ns/default/sa/web")), chain: []*x509.Certificate{web}, wantID: "spiffe://cluster.local/ns/default/sa/web"},
		{name: "mesh peer, other identity expected", v: mesh(exact(resource.SANURI, "spiffe://cluster.local/ns/default/sa/db")), chain: []*x509.Certificate{web}, wantErr: ErrSANMismatch},
		{name: "prefix matcher", v: mesh(resource.SANMatcher{Type: resource.SANURI, Matcher: resource.StringMatcher{Kind: resource.StringPrefix, Value: "spiffe://cluster.local/ns/default/"}}), chain: []*x509.Certificate{web}, wantID: "spiffe://cluster.local/ns/default/sa/web"},
		{name: "regex matcher", v: mesh(resource.SANMatcher{Type: resource.SANURI, Matcher: resource.StringMatcher{Kind: resource.StringRegex, Regex: regexp.MustCompile(`^spiffe://cluster\.local/ns/[a-z]+/sa/web$`)}}), chain: []*x509.Certificate{web}, wantID: "spiffe://cluster.local/ns/default/sa/web"},
		{name: "untrusted root", v: mesh(), chain: []*x509.Certificate{foreign}, wantErr: ErrUntrusted},
		{name: "expired", v: mesh(), chain: []*x509.Certificate{expired}, wantErr: ErrUntrusted},
		{name: "no certificate", v: mesh(), chain: nil, wantErr: ErrNoPeerCert},
		{name: "dns wildcard against exact", v: &resource.Validation{Roots: pool, SANs: []resource.SANMatcher{exact(resource.SANDNS, "api.example.com")}}, chain: []*x509.Certificate{wildcard}},
		{name: "dns wildcard does not cover two labels", v: &resource.Validation{Roots: pool, SANs: []resource.SANMatcher{exact(resource.SANDNS, "a.b.example.com")}}, chain: []*x509.Certificate{wildcard}, wantErr: ErrSANMismatch},
		{name: "ip SAN", v: &resource.Validation{Roots: pool, SANs: []resource.SANMatcher{exact(resource.SANIP, "10.0.0.1")}}, chain: []*x509.Certificate{wildcard}},
		{name: "no validation accepts anything", v: nil, chain: []*x509.Certificate{foreign}, wantID: "spiffe://cluster.local/ns/default/sa/web"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := newVerifier(tc.v, Env{Secrets: bundle})
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.check(tc.chain)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && id.String() != tc.wantID && !(tc.wantID == "" && id.IsZero()) {
				t.Errorf("id = %q, want %q", id, tc.wantID)
			}
		})
	}
}

func TestMissingSecrets(t *testing.T) {
	u := &resource.UpstreamTLS{TLSCommon: resource.TLSCommon{CertSecret: "default", Validation: &resource.Validation{RootsSecret: "ROOTCA"}}}
	if _, err := NewClient(u, Env{}); !errors.Is(err, ErrMissingSecret) {
		t.Errorf("no ROOTCA: %v", err)
	}
	pool := x509.NewCertPool()
	env := Env{Secrets: map[string]*resource.Secret{"ROOTCA": {Roots: pool}}}
	if _, err := NewClient(u, env); !errors.Is(err, ErrMissingSecret) {
		t.Errorf("no identity for \"default\": %v", err)
	}
	c := FailingClient(ErrMissingSecret)
	a, b := net.Pipe()
	defer b.Close()
	if _, err := c.Handshake(t.Context(), a); !errors.Is(err, ErrMissingSecret) {
		t.Errorf("failing client handshake: %v", err)
	}
}
