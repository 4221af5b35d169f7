package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// tokenPrefix marks skein bootstrap tokens so a leaked one is recognisable in logs or
// secret scanners; it carries no information an attacker could use.
const tokenPrefix = "skein-ca-v1."

// Credential is a bootstrap credential for one sidecar. Token is the secret: it is
// returned once, and the CA keeps only its SHA-256.
type Credential struct {
	Token    string      // bearer token, 256 random bits; give it only to the sidecar
	ID       string      // non-secret handle (prefix of the token hash) for logs
	Identity Identity    // the only identity this credential can obtain SVIDs for
	SPIFFEID spiffeid.ID // Identity as a SPIFFE ID in the CA's trust domain
	ProxyID  string      // the proxy it is bound to; empty until the first redemption binds it
}

type credentialRecord struct {
	identity Identity
	proxyID  string
	revoked  bool
}

// credentialStore holds hashed credentials in memory: the runtime that issues them
// lives in the same process as the CA and re-issues them on restart.
type credentialStore struct {
	mu     sync.Mutex
	byHash map[[sha256.Size]byte]*credentialRecord
}

func (s *credentialStore) init() { s.byHash = map[[sha256.Size]byte]*credentialRecord{} }

func hashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

func handle(h [sha256.Size]byte) string { return hex.EncodeToString(h[:8]) }

// IssueCredential creates a bootstrap credential for the workload ns/sa run by proxyID.
// A credential can be redeemed any number of times (certificate rotation), only for
// that identity and, once bound, only by that proxy. proxyID may be empty: the first
// successful redemption that names a proxy then binds it.
func (c *CA) IssueCredential(ns, sa, proxyID string) (Credential, error) {
	id := Identity{Namespace: ns, ServiceAccount: sa}
	sid, err := c.SPIFFEID(id)
	if err != nil || ns == "" || sa == "" {
		return Credential{}, fmt.Errorf("ca: %w: credential for %s: %v", ErrInvalidIdentity, id, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Credential{}, fmt.Errorf("ca: credential: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := hashToken(token)

	c.creds.mu.Lock()
	c.creds.byHash[h] = &credentialRecord{identity: id, proxyID: proxyID}
	c.creds.mu.Unlock()

	c.opts.Logger.Info("ca: issued credential", "credential", handle(h), "identity", sid.String(), "proxy", proxyID)
	return Credential{Token: token, ID: handle(h), Identity: id, SPIFFEID: sid, ProxyID: proxyID}, nil
}

// RevokeCredential makes a credential unusable for further CSRs (the sidecar stopped).
// Certificates already issued stay valid until they expire.
func (c *CA) RevokeCredential(token string) error {
	h := hashToken(token)
	c.creds.mu.Lock()
	defer c.creds.mu.Unlock()
	r, ok := c.creds.byHash[h]
	if !ok {
		return &SignError{Stage: StageCredential, Reason: ErrCredentialUnknown}
	}
	r.revoked = true
	c.opts.Logger.Info("ca: revoked credential", "credential", handle(h), "identity", r.identity.String())
	return nil
}

// VerifyCredential reports the identity a token was issued for, if it is valid and
// (when proxyID is not empty) bound to proxyID or not bound yet. It does not bind.
// Other control-plane endpoints (e.g. xDS) can use it to authenticate a proxy.
func (c *CA) VerifyCredential(token, proxyID string) (Identity, error) {
	r, err := c.creds.check(token, proxyID)
	if err != nil {
		return Identity{}, err
	}
	return r.identity, nil
}

// check returns a copy of the record for token or a StageCredential SignError.
func (s *credentialStore) check(token, proxyID string) (credentialRecord, error) {
	if token == "" {
		return credentialRecord{}, &SignError{Stage: StageCredential, Reason: ErrCredentialMissing}
	}
	if !strings.HasPrefix(token, tokenPrefix) {
		return credentialRecord{}, &SignError{Stage: StageCredential, Reason: ErrCredentialUnknown, Detail: "not a skein bootstrap token"}
	}
	h := hashToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byHash[h]
	switch {
	case !ok:
		return credentialRecord{}, &SignError{Stage: StageCredential, Reason: ErrCredentialUnknown}
	case r.revoked:
		return credentialRecord{}, failf(StageCredential, ErrCredentialRevoked, "credential %s", handle(h))
	case proxyID != "" && r.proxyID != "" && r.proxyID != proxyID:
		return credentialRecord{}, failf(StageCredential, ErrCredentialWrongProxy, "credential %s presented by proxy %q", handle(h), proxyID)
	}
	return *r, nil
}

// bind ties an unbound credential to proxyID; it fails if another proxy won the race.
func (s *credentialStore) bind(token, proxyID string) error {
	if proxyID == "" {
		return nil
	}
	h := hashToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byHash[h]
	if !ok || r.revoked {
		return &SignError{Stage: StageCredential, Reason: ErrCredentialRevoked}
	}
	if r.proxyID == "" {
		r.proxyID = proxyID
		return nil
	}
	if r.proxyID != proxyID {
		return failf(StageCredential, ErrCredentialWrongProxy, "credential %s presented by proxy %q", handle(h), proxyID)
	}
	return nil
}
