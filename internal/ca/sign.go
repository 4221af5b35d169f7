package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	maxCSRBytes   = 64 << 10
	minRSABits    = 2048
	maxRSABits    = 8192
	maxTTLRequest = 100 * 365 * 24 * time.Hour // beyond this a TTL is a bug, not a wish
)

// SignRequest asks for a workload SVID.
type SignRequest struct {
	// CSR is a PEM "CERTIFICATE REQUEST" with exactly one URI SAN, the workload SPIFFE ID.
	CSR []byte
	// TTL requested; zero means the CA's WorkloadTTL, larger values are capped to it.
	TTL time.Duration
	// Identity attested by the caller. When zero (the gRPC service), the identity is the
	// one the CSR asks for, and the credential decides whether the caller may have it.
	Identity Identity
	// Credential is the bootstrap token the caller presented.
	Credential string
	// ProxyID names the presenting proxy, if known; it must match the credential's binding.
	ProxyID string
}

// SVID is an issued workload certificate with what a peer needs to verify it.
type SVID struct {
	ID     spiffeid.ID
	Leaf   *x509.Certificate
	Chain  []*x509.Certificate // leaf first, then intermediates (plug-in CA); no root
	Bundle []*x509.Certificate // trusted roots at issue time
}

// ChainPEM returns the chain as concatenated PEM, leaf first.
func (s *SVID) ChainPEM() []byte { return encodeCerts(s.Chain) }

// BundlePEM returns the trust bundle as concatenated PEM.
func (s *SVID) BundlePEM() []byte { return encodeCerts(s.Bundle) }

// Sign checks a request and issues an SVID. Checks run in a fixed order — request
// shape, CSR, credential, identity match — and the first failure is returned as a
// *SignError matching the stage sentinel (ErrInvalidRequest, ErrInvalidCSR,
// ErrInvalidCredential, ErrIdentityMismatch) and a reason sentinel.
func (c *CA) Sign(ctx context.Context, req SignRequest) (*SVID, error) {
	svid, err := c.sign(ctx, req)
	if err != nil {
		c.opts.Logger.Warn("ca: rejected CSR", "identity", req.Identity.String(), "proxy", req.ProxyID, "err", err)
		return nil, err
	}
	c.opts.Logger.Info("ca: issued SVID", "id", svid.ID.String(), "proxy", req.ProxyID,
		"serial", svid.Leaf.SerialNumber.Text(16), "notAfter", svid.Leaf.NotAfter)
	if c.opts.OnIssued != nil {
		c.opts.OnIssued(req.ProxyID, svid)
	}
	return svid, nil
}

func (c *CA) sign(ctx context.Context, req SignRequest) (*SVID, error) {
	// 1. Request shape.
	ttl, err := c.checkShape(req)
	if err != nil {
		return nil, err
	}
	// 2. CSR.
	csr, requested, err := c.checkCSR(req.CSR, req.Identity)
	if err != nil {
		return nil, err
	}
	// 3. Credential.
	cred, err := c.creds.check(req.Credential, req.ProxyID)
	if err != nil {
		return nil, err
	}
	// 4. Identity match.
	if cred.identity != requested {
		return nil, &SignError{Stage: StageIdentity, Reason: &IdentityError{Credential: cred.identity, Requested: requested}}
	}
	if err := c.creds.bind(req.Credential, req.ProxyID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	return c.issue(csr, requested, ttl)
}

func (c *CA) checkShape(req SignRequest) (time.Duration, error) {
	switch {
	case len(bytes.TrimSpace(req.CSR)) == 0:
		return 0, &SignError{Stage: StageRequest, Reason: ErrEmptyCSR}
	case len(req.CSR) > maxCSRBytes:
		return 0, failf(StageRequest, ErrCSRTooLarge, "%d bytes, at most %d", len(req.CSR), maxCSRBytes)
	case req.TTL < 0:
		return 0, failf(StageRequest, ErrBadTTL, "%s", req.TTL)
	case req.TTL > maxTTLRequest:
		return 0, failf(StageRequest, ErrBadTTL, "TTL %s is out of range", req.TTL)
	case (req.Identity.Namespace == "") != (req.Identity.ServiceAccount == ""):
		return 0, failf(StageRequest, ErrPartialIdentity, "%s", req.Identity)
	}
	ttl := req.TTL
	if ttl == 0 || ttl > c.opts.WorkloadTTL {
		ttl = c.opts.WorkloadTTL
	}
	return ttl, nil
}

// checkCSR parses and verifies the CSR and returns the identity it asks for. When want
// is set, the CSR must ask for exactly that identity.
func (c *CA) checkCSR(csrPEM []byte, want Identity) (*x509.CertificateRequest, Identity, error) {
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, Identity{}, &SignError{Stage: StageCSR, Reason: ErrCSRNotPEM}
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, Identity{}, failf(StageCSR, ErrCSRParse, "%v", err)
	}
	// Key type and size first: verifying a signature with an oversized RSA key is
	// exactly the work an attacker would like us to do.
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, Identity{}, failf(StageCSR, ErrCSRKeyType, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, Identity{}, failf(StageCSR, ErrCSRSignature, "%v", err)
	}
	if len(csr.DNSNames) != 0 || len(csr.IPAddresses) != 0 || len(csr.EmailAddresses) != 0 {
		return nil, Identity{}, failf(StageCSR, ErrCSRExtraSAN, "dns=%q ip=%v email=%q", csr.DNSNames, csr.IPAddresses, csr.EmailAddresses)
	}
	if len(csr.URIs) != 1 {
		return nil, Identity{}, failf(StageCSR, ErrCSRURISAN, "found %d URI SANs", len(csr.URIs))
	}
	got, err := c.workloadIdentity(csr.URIs[0])
	if err != nil {
		return nil, Identity{}, err
	}
	if want != (Identity{}) && got != want {
		wantID, _ := c.SPIFFEID(want)
		return nil, Identity{}, failf(StageCSR, ErrCSRURISAN, "CSR asks for %s, attested identity is %s", csr.URIs[0], wantID)
	}
	return csr, got, nil
}

// workloadIdentity parses a URI SAN as spiffe://<our td>/ns/<ns>/sa/<sa>, and nothing else.
func (c *CA) workloadIdentity(u *url.URL) (Identity, error) {
	id, err := spiffeid.FromURI(u)
	if err != nil {
		return Identity{}, failf(StageCSR, ErrCSRURISAN, "%q: %v", u.String(), err)
	}
	if id.TrustDomain() != c.td {
		return Identity{}, failf(StageCSR, ErrCSRTrustDomain, "%s, want %s", id.TrustDomain(), c.td)
	}
	// spiffeid has already rejected empty, "." and ".." segments and odd characters.
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(segs) != 4 || segs[0] != "ns" || segs[2] != "sa" {
		return Identity{}, failf(StageCSR, ErrCSRWorkloadPath, "%q", id.Path())
	}
	ident := Identity{Namespace: segs[1], ServiceAccount: segs[3]}
	// The canonical form must round-trip exactly (no query, fragment or user info).
	if canon, err := c.SPIFFEID(ident); err != nil || canon.String() != u.String() {
		return Identity{}, failf(StageCSR, ErrCSRURISAN, "%q is not in canonical form", u.String())
	}
	return ident, nil
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return fmt.Errorf("RSA key of %d bits", bits)
		}
		return nil
	}
	return fmt.Errorf("key type %T", pub)
}

func (c *CA) issue(csr *x509.CertificateRequest, id Identity, ttl time.Duration) (*SVID, error) {
	a := c.current.Load()
	sid, err := c.SPIFFEID(id)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := c.opts.Clock()
	// Backdate a little for clock skew between hosts, but never by a large share of a
	// short TTL: proxies rotate at half-life measured from NotBefore.
	backdate := min(maxBackdate, ttl/10)
	notAfter := now.Add(ttl)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter // never outlive the signer
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{sid.URL()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, csr.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse issued certificate: %w", err)
	}
	if a.issued != nil {
		a.issued.observe(leaf.NotAfter)
	}
	chain := []*x509.Certificate{leaf}
	if c.plugin {
		chain = append(chain, a.cert)
		chain = append(chain, a.intermediates...)
	}
	return &SVID{ID: sid, Leaf: leaf, Chain: chain, Bundle: append([]*x509.Certificate(nil), a.bundle...)}, nil
}
