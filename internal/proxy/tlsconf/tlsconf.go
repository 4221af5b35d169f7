// Package tlsconf turns the TLS contexts of accepted xDS resources into crypto/tls
// configurations: client configs for clusters (UpstreamTlsContext) and server configs
// for listener filter chains (DownstreamTlsContext). The secret "default" is the proxy's
// own workload certificate (package identity), read at every handshake from an atomic
// pointer, so renewals need no new config; other secret names (ROOTCA) come from SDS.
//
// Peers are verified as Envoy verifies them, using go-spiffe for SPIFFE certificates:
// the chain must lead to a trusted root (x509svid.Verify when the leaf is an SVID,
// crypto/x509 otherwise), then, when match_typed_subject_alt_names is set, one SAN must
// match. Like Envoy's trusted_ca, a bundle is not tied to one trust domain; the SAN
// matchers say which identities are acceptable.
package tlsconf

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
)

// DefaultSecret is the SDS name of the proxy's own workload certificate.
const DefaultSecret = "default"

// HandshakeTimeout bounds a TLS handshake when the context sets no deadline.
const HandshakeTimeout = 10 * time.Second

// Identity is the proxy's workload certificate source.
type Identity interface {
	ID() spiffeid.ID
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Env resolves what TLS contexts reference.
type Env struct {
	// Identity provides the secret "default"; nil when the proxy has no workload identity.
	Identity Identity
	// Secrets are the SDS secrets received (trust bundles).
	Secrets map[string]*resource.Secret
	// Now is the verification clock; time.Now when nil.
	Now func() time.Time
}

// Typed errors of verification, so callers and tests can tell them apart.
var (
	ErrMissingSecret = errors.New("tlsconf: referenced secret not available")
	ErrNoPeerCert    = errors.New("tlsconf: peer sent no certificate")
	ErrSANMismatch   = errors.New("tlsconf: peer certificate matches no accepted subject alt name")
	ErrUntrusted     = errors.New("tlsconf: peer certificate is not trusted")
)

// Client originates TLS for a cluster (or one transport_socket_match of it).
type Client struct {
	// Key identifies the settings that matter for reusing a connection (SNI, ALPN,
	// certificate, accepted SANs); two Clients with equal keys may share pools.
	Key    string
	cfg    *tls.Config
	local  spiffeid.ID
	verify *verifier
	fail   error
}

// Server terminates TLS for a filter chain.
type Server struct {
	cfg   *tls.Config
	local spiffeid.ID
}

// NewClient compiles an UpstreamTlsContext.
func NewClient(u *resource.UpstreamTLS, env Env) (*Client, error) {
	v, err := newVerifier(u.Validation, env)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		ServerName: u.SNI,
		// Verification is Envoy's (verifier), not crypto/tls's hostname check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.check(cs.PeerCertificates)
			return err
		},
		NextProtos: slices.Clone(u.ALPN),
		MinVersion: orDefault(u.MinVersion, tls.VersionTLS12),
		MaxVersion: orDefault(u.MaxVersion, tls.VersionTLS13),
	}
	c := &Client{cfg: cfg, verify: v}
	certKey, err := setCertificate(&u.TLSCommon, env, func(id Identity) { cfg.GetClientCertificate = id.GetClientCertificate },
		func(cert *tls.Certificate) { cfg.Certificates = []tls.Certificate{*cert} })
	if err != nil {
		return nil, err
	}
	if env.Identity != nil && u.CertSecret == DefaultSecret {
		c.local = env.Identity.ID()
	}
	c.Key = strings.Join([]string{"sni=" + u.SNI, "alpn=" + strings.Join(u.ALPN, ","), "cert=" + certKey, "verify=" + v.key(),
		"v=" + strconv.Itoa(int(cfg.MinVersion)) + "-" + strconv.Itoa(int(cfg.MaxVersion))}, ";")
	return c, nil
}

// FailingClient is a Client whose handshakes fail with err: the stand-in for a TLS
// context that could not be built, so traffic never falls back to plaintext.
func FailingClient(err error) *Client {
	return &Client{Key: "failing", cfg: &tls.Config{}, fail: err}
}

// Config returns the client config (do not modify).
func (c *Client) Config() *tls.Config { return c.cfg }

// Handshake runs the client handshake on conn; on failure conn is closed.
func (c *Client) Handshake(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	if c.fail != nil {
		conn.Close()
		return nil, c.fail
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, HandshakeTimeout)
		defer cancel()
	}
	tc := tls.Client(conn, c.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// NewServer compiles a DownstreamTlsContext.
func NewServer(d *resource.DownstreamTLS, env Env) (*Server, error) {
	v, err := newVerifier(d.Validation, env)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		ClientAuth: tls.NoClientCert,
		NextProtos: slices.Clone(d.ALPN),
		MinVersion: orDefault(d.MinVersion, tls.VersionTLS12),
		MaxVersion: orDefault(d.MaxVersion, tls.VersionTLS13),
	}
	switch {
	case d.RequireClientCert:
		cfg.ClientAuth = tls.RequireAnyClientCert
	case d.Validation != nil:
		cfg.ClientAuth = tls.RequestClientCert
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 && !d.RequireClientCert {
			return nil
		}
		_, err := v.check(cs.PeerCertificates)
		return err
	}
	s := &Server{cfg: cfg}
	if _, err := setCertificate(&d.TLSCommon, env, func(id Identity) { cfg.GetCertificate = id.GetCertificate },
		func(cert *tls.Certificate) { cfg.Certificates = []tls.Certificate{*cert} }); err != nil {
		return nil, err
	}
	switch {
	case env.Identity != nil && d.CertSecret == DefaultSecret:
		s.local = env.Identity.ID()
	case d.Cert != nil && d.Cert.Leaf != nil:
		s.local, _ = x509svid.IDFromCert(d.Cert.Leaf)
	}
	return s, nil
}

// PeerExchangeALPN is the ALPN protocol of skein's in-band TCP metadata exchange
// between sidecars (forward/exchange.go); skein's own id, not Istio's
// "istio-peer-exchange", whose framing differs.
const PeerExchangeALPN = "skein-peer-exchange"

// WithPeerExchange returns the server of a mesh-mTLS filter chain that understands
// clients offering PeerExchangeALPN: a TCP chain without ALPN of its own negotiates it;
// a chain with its own ALPN (HTTP) that the client's offer does not overlap
// negotiates none, as when the client offered nothing (instead of failing the
// handshake, which crypto/tls does on disjoint offers). Other clients are unaffected.
func (s *Server) WithPeerExchange(tcp bool) *Server {
	base := s.cfg
	var mx, none *tls.Config
	if tcp && len(base.NextProtos) == 0 {
		mx = base.Clone()
		mx.NextProtos = []string{PeerExchangeALPN}
	}
	if len(base.NextProtos) > 0 {
		none = base.Clone()
		none.NextProtos = nil
	}
	if mx == nil && none == nil {
		return s
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedProtos, PeerExchangeALPN) {
			return nil, nil
		}
		if mx != nil {
			return mx, nil
		}
		for _, p := range hello.SupportedProtos {
			if slices.Contains(base.NextProtos, p) {
				return nil, nil
			}
		}
		return none, nil
	}
	return &Server{cfg: cfg, local: s.local}
}

// Handshake runs the server handshake on conn and describes the verified peer. On
// failure conn is closed.
func (s *Server) Handshake(ctx context.Context, conn net.Conn) (*tls.Conn, *peer.Info, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, HandshakeTimeout)
		defer cancel()
	}
	tc := tls.Server(conn, s.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return tc, s.PeerInfo(tc), nil
}

// PeerInfo describes the peer of a completed handshake.
func (s *Server) PeerInfo(tc *tls.Conn) *peer.Info {
	cs := tc.ConnectionState()
	info := &peer.Info{
		TLS:                true,
		ServerName:         cs.ServerName,
		NegotiatedProtocol: cs.NegotiatedProtocol,
		LocalID:            s.local,
		RemoteAddr:         tc.RemoteAddr().String(),
		Chain:              cs.PeerCertificates,
	}
	if len(cs.PeerCertificates) > 0 {
		info.Certificate = cs.PeerCertificates[0]
		// The handshake verified the chain; the ID is the leaf's SPIFFE URI SAN.
		info.ID, _ = x509svid.IDFromCert(info.Certificate)
	}
	return info
}

func orDefault(v, def uint16) uint16 {
	if v == 0 {
		return def
	}
	return v
}

// setCertificate installs this side's certificate and returns a key describing it.
func setCertificate(c *resource.TLSCommon, env Env, dynamic func(Identity), static func(*tls.Certificate)) (string, error) {
	switch {
	case c.CertSecret == DefaultSecret:
		if env.Identity == nil {
			return "", fmt.Errorf("%w: %q (this proxy has no workload identity: start it with a bootstrap credential)", ErrMissingSecret, DefaultSecret)
		}
		dynamic(env.Identity)
		return "sds:" + DefaultSecret, nil
	case c.CertSecret != "":
		return "", fmt.Errorf("%w: certificate secret %q (only %q is provided, by the proxy itself)", ErrMissingSecret, c.CertSecret, DefaultSecret)
	case c.Cert != nil:
		static(c.Cert)
		sum := sha256.Sum256(c.Cert.Certificate[0])
		return "inline:" + hex.EncodeToString(sum[:8]), nil
	}
	return "none", nil
}

// verifier checks a peer's certificate chain against a validation context.
type verifier struct {
	none     bool // no validation context: accept anything (Envoy semantics)
	roots    []*x509.Certificate
	pool     *x509.CertPool
	system   bool
	sans     []resource.SANMatcher
	rootsKey string
	now      func() time.Time
}

func newVerifier(v *resource.Validation, env Env) (*verifier, error) {
	now := env.Now
	if now == nil {
		now = time.Now
	}
	if v == nil {
		return &verifier{none: true, now: now}, nil
	}
	out := &verifier{sans: v.SANs, now: now}
	switch {
	case v.RootsSecret != "":
		s := env.Secrets[v.RootsSecret]
		if s == nil {
			return nil, fmt.Errorf("%w: validation secret %q", ErrMissingSecret, v.RootsSecret)
		}
		out.roots, out.pool, out.rootsKey = s.RootCerts, s.Roots, "sds:"+v.RootsSecret
	case v.Roots != nil:
		out.pool, out.rootsKey = v.Roots, "inline"
	case v.SystemRoots:
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("tlsconf: system roots: %w", err)
		}
		out.pool, out.system, out.rootsKey = pool, true, "system"
	default:
		// A context without trust anchors verifies nothing (the decoder refuses SAN
		// matchers without them, as Envoy does).
		out.none = true
	}
	return out, nil
}

func (v *verifier) key() string {
	if v.none {
		return "none"
	}
	parts := []string{v.rootsKey}
	for _, s := range v.sans {
		parts = append(parts, fmt.Sprintf("%d:%d:%t:%s", s.Type, s.Matcher.Kind, s.Matcher.IgnoreCase, s.Matcher.Value))
		if s.Matcher.Regex != nil {
			parts = append(parts, s.Matcher.Regex.String())
		}
	}
	return strings.Join(parts, "|")
}

// check verifies a chain (leaf first) and returns the leaf's SPIFFE ID, if any.
func (v *verifier) check(chain []*x509.Certificate) (spiffeid.ID, error) {
	if v.none {
		if len(chain) > 0 {
			id, _ := x509svid.IDFromCert(chain[0])
			return id, nil
		}
		return spiffeid.ID{}, nil
	}
	if len(chain) == 0 {
		return spiffeid.ID{}, ErrNoPeerCert
	}
	leaf := chain[0]
	id, idErr := x509svid.IDFromCert(leaf)
	switch {
	case v.roots != nil && idErr == nil:
		// A SPIFFE peer against the mesh bundle: go-spiffe verifies the SVID.
		vid, _, err := x509svid.Verify(chain, anyDomain(v.roots), x509svid.WithTime(v.now()))
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
		id = vid
	case v.pool != nil:
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.pool, Intermediates: inter, CurrentTime: v.now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return spiffeid.ID{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
	}
	if len(v.sans) > 0 && !matchSANs(leaf, v.sans) {
		return spiffeid.ID{}, fmt.Errorf("%w: %s", ErrSANMismatch, describeSANs(leaf))
	}
	if idErr != nil {
		id = spiffeid.ID{}
	}
	return id, nil
}

// anyDomain serves one set of roots for every trust domain, as Envoy's trusted_ca.
type anyDomain []*x509.Certificate

func (a anyDomain) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.FromX509Authorities(td, a), nil
}

func matchSANs(leaf *x509.Certificate, sans []resource.SANMatcher) bool {
	for _, m := range sans {
		switch m.Type {
		case resource.SANURI:
			for _, u := range leaf.URIs {
				if m.Matcher.Match(u.String()) {
					return true
				}
			}
		case resource.SANDNS:
			for _, d := range leaf.DNSNames {
				if m.Matcher.Match(d) || wildcardMatch(m.Matcher, d) {
					return true
				}
			}
		case resource.SANIP:
			for _, ip := range leaf.IPAddresses {
				if m.Matcher.Match(ip.String()) {
					return true
				}
			}
		}
	}
	return false
}

// wildcardMatch lets an exact matcher "a.example.com" accept a certificate DNS SAN
// "*.example.com", as Envoy does for DNS SANs.
func wildcardMatch(m resource.StringMatcher, san string) bool {
	if m.Kind != resource.StringExact || !strings.HasPrefix(san, "*.") {
		return false
	}
	v := m.Value
	i := strings.IndexByte(v, '.')
	return i > 0 && strings.EqualFold(v[i:], san[1:])
}

func describeSANs(leaf *x509.Certificate) string {
	var parts []string
	for _, u := range leaf.URIs {
		parts = append(parts, "URI:"+u.String())
	}
	for _, d := range leaf.DNSNames {
		parts = append(parts, "DNS:"+d)
	}
	for _, ip := range leaf.IPAddresses {
		parts = append(parts, "IP:"+ip.String())
	}
	if len(parts) == 0 {
		return "certificate has no SANs"
	}
	return "certificate has " + strings.Join(parts, ", ")
}
