package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// testClock is a settable clock for Options.Clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestCA(t testing.TB, opts Options) *CA {
	t.Helper()
	c, err := LoadOrCreate(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return c
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrSpec describes a CSR to build for a test; the zero value has no SANs.
type csrSpec struct {
	key    crypto.Signer
	uris   []string
	dns    []string
	ips    []net.IP
	emails []string
}

func makeCSR(t testing.TB, s csrSpec) []byte {
	t.Helper()
	if s.key == nil {
		s.key = mustKey(t)
	}
	tmpl := &x509.CertificateRequest{DNSNames: s.dns, IPAddresses: s.ips, EmailAddresses: s.emails}
	for _, u := range s.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func workloadURI(td, ns, sa string) string { return "spiffe://" + td + "/ns/" + ns + "/sa/" + sa }

// verifySVID checks a chain against a bundle with go-spiffe, as a peer would.
func verifySVID(t testing.TB, td spiffeid.TrustDomain, chain, bundle []*x509.Certificate, at time.Time) (spiffeid.ID, error) {
	t.Helper()
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, bundle), x509svid.WithTime(at))
	return id, err
}
