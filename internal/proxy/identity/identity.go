// Package identity keeps the proxy's workload certificate (its X.509 SVID, the SDS
// secret "default"): it generates a key, sends a CSR with the bootstrap credential to
// the control plane's CA (skein.ca.v1.Certificate over the xDS gRPC connection's
// address), and renews the certificate at half its lifetime with a fresh key. The key
// never leaves the proxy. The current certificate is an atomic pointer, read by TLS
// handshakes (GetCertificate / GetClientCertificate): a renewal affects only new
// connections, and live ones keep going.
package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"skein.dev/skein/internal/ca"
)

// ErrNoCertificate is returned by handshakes before the first certificate arrived.
var ErrNoCertificate = errors.New("identity: no workload certificate yet")

// Options configure a Manager.
type Options struct {
	// Conn reaches the control plane serving skein.ca.v1.Certificate.
	Conn grpc.ClientConnInterface
	// TokenFile holds the bootstrap credential (read before every request, so the
	// runtime may replace it).
	TokenFile string
	// ProxyID is sent with every CSR; the CA binds the credential to it.
	ProxyID string
	// ID is the SPIFFE ID to request: spiffe://<td>/ns/<ns>/sa/<sa>.
	ID spiffeid.ID
	// TTL to ask for; zero asks for the CA's default.
	TTL    time.Duration
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MinRetry and MaxRetry bound the delay between failed requests (100ms, 5s).
	MinRetry, MaxRetry time.Duration
}

// Status describes the current certificate, for admin pages and tests.
type Status struct {
	ID        string    `json:"spiffeID"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	// Issuer is the subject of the certificate that signed it.
	Issuer    string `json:"issuer,omitempty"`
	Renewals  int    `json:"renewals"`
	LastError string `json:"lastError,omitempty"`
}

// Manager obtains and renews the workload certificate. Create it with New, start Run.
type Manager struct {
	opts   Options
	client *ca.Client
	cert   atomic.Pointer[tls.Certificate]
	status atomic.Pointer[Status]
	ready  chan struct{}
}

// New checks the options; nothing happens until Run.
func New(opts Options) (*Manager, error) {
	if opts.Conn == nil || opts.TokenFile == "" || opts.ProxyID == "" || opts.ID.IsZero() {
		return nil, errors.New("identity: Conn, TokenFile, ProxyID and ID are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinRetry <= 0 {
		opts.MinRetry = 100 * time.Millisecond
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = 5 * time.Second
	}
	m := &Manager{opts: opts, client: ca.NewClient(opts.Conn).WithProxyID(opts.ProxyID), ready: make(chan struct{})}
	m.status.Store(&Status{ID: opts.ID.String()})
	return m, nil
}

// ID is the workload SPIFFE ID.
func (m *Manager) ID() spiffeid.ID { return m.opts.ID }

// Certificate returns the current certificate, nil before the first one.
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// Ready is closed once the first certificate is held.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Status returns a snapshot of the current certificate's state.
func (m *Manager) Status() Status { return *m.status.Load() }

// GetCertificate serves tls.Config.GetCertificate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// GetClientCertificate serves tls.Config.GetClientCertificate.
func (m *Manager) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return m.GetCertificate(nil)
}

// Run fetches the first certificate and renews it until ctx ends. Failures are
// retried with jittered backoff while the current certificate keeps serving.
func (m *Manager) Run(ctx context.Context) error {
	backoff := m.opts.MinRetry
	for {
		wait := time.Duration(0)
		if c := m.cert.Load(); c != nil {
			wait = m.renewAt(c.Leaf).Sub(m.opts.Now())
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		err := m.renew(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			backoff = m.opts.MinRetry
			continue
		}
		st := m.Status()
		st.LastError = err.Error()
		m.status.Store(&st)
		m.opts.Logger.Warn("workload certificate request failed", "id", m.opts.ID.String(), "error", err, "retry", backoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, m.opts.MaxRetry)
	}
}

// renewAt is half-way through a certificate's lifetime, as Istio's agent renews.
func (m *Manager) renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life / 2)
}

// renew requests one certificate with a fresh key and installs it.
func (m *Manager) renew(ctx context.Context) error {
	raw, err := os.ReadFile(m.opts.TokenFile)
	if err != nil {
		return fmt.Errorf("bootstrap credential: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR(m.opts.ID.String())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.client.CreateCertificate(ctx, token, csrPEM, m.opts.TTL)
	if err != nil {
		return fmt.Errorf("CSR: %w", err)
	}
	cert, id, err := ca.ParseSVID(resp.ChainPEM(), keyPEM)
	if err != nil {
		return err
	}
	if id != m.opts.ID {
		return fmt.Errorf("CA issued %s, want %s", id, m.opts.ID)
	}
	// The chain must verify against the bundle the CA sent with it.
	bundle, err := x509bundle.Parse(m.opts.ID.TrustDomain(), resp.BundlePEM())
	if err != nil {
		return fmt.Errorf("trust bundle in the CA's answer: %w", err)
	}
	if _, _, err := x509svid.Verify(leafChain(cert), bundle); err != nil {
		return fmt.Errorf("issued certificate does not verify: %w", err)
	}
	prev := m.cert.Swap(&cert)
	st := Status{
		ID:        id.String(),
		Serial:    cert.Leaf.SerialNumber.Text(16),
		NotBefore: cert.Leaf.NotBefore,
		NotAfter:  cert.Leaf.NotAfter,
		Issuer:    cert.Leaf.Issuer.String(),
		Renewals:  m.Status().Renewals,
	}
	if prev == nil {
		close(m.ready)
	} else {
		st.Renewals++
	}
	m.status.Store(&st)
	m.opts.Logger.Info("workload certificate installed", "id", id.String(), "serial", st.Serial, "notAfter", st.NotAfter, "renewals", st.Renewals)
	return nil
}

func leafChain(c tls.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		if x, err := x509.ParseCertificate(der); err == nil {
			out = append(out, x)
		}
	}
	return out
}
