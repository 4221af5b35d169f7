package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var stageSentinels = map[Stage]error{
	StageRequest:    ErrInvalidRequest,
	StageCSR:        ErrInvalidCSR,
	StageCredential: ErrInvalidCredential,
	StageIdentity:   ErrIdentityMismatch,
}

// checkSignError asserts err is a *SignError of the given stage and reason, matching
// exactly one stage sentinel.
func checkSignError(t *testing.T, err error, stage Stage, reason error) {
	t.Helper()
	var se *SignError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *SignError", err, err)
	}
	if se.Stage != stage {
		t.Errorf("stage = %s, want %s (err %v)", se.Stage, stage, err)
	}
	if !errors.Is(err, reason) {
		t.Errorf("err = %v, want it to match %v", err, reason)
	}
	for s, sentinel := range stageSentinels {
		if got, want := errors.Is(err, sentinel), s == stage; got != want {
			t.Errorf("errors.Is(err, %v) = %v, want %v", sentinel, got, want)
		}
	}
}

func TestSignChecks(t *testing.T) {
	ca := newTestCA(t, Options{})
	ctx := context.Background()
	td := ca.TrustDomain().Name()
	uriA := workloadURI(td, "shop", "frontend")
	credA, err := ca.IssueCredential("shop", "frontend", "proxy-a")
	if err != nil {
		t.Fatal(err)
	}
	credB, err := ca.IssueCredential("shop", "catalog", "proxy-b")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := ca.IssueCredential("shop", "frontend", "proxy-r")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.RevokeCredential(revoked.Token); err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	good := makeCSR(t, csrSpec{uris: []string{uriA}})
	badSig := func() []byte {
		block, _ := pem.Decode(good)
		der := bytes.Clone(block.Bytes)
		der[len(der)-3] ^= 0xff // inside the signature BIT STRING
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}()

	tests := []struct {
		name       string
		req        SignRequest
		wantStage  Stage // zero: success
		wantReason error
	}{
		// 1. Request shape.
		{"empty CSR", SignRequest{Credential: credA.Token}, StageRequest, ErrEmptyCSR},
		{"blank CSR", SignRequest{CSR: []byte(" \n\t"), Credential: credA.Token}, StageRequest, ErrEmptyCSR},
		{"huge CSR", SignRequest{CSR: bytes.Repeat([]byte("A"), maxCSRBytes+1), Credential: credA.Token}, StageRequest, ErrCSRTooLarge},
		{"negative TTL", SignRequest{CSR: good, TTL: -time.Second, Credential: credA.Token}, StageRequest, ErrBadTTL},
		{"absurd TTL", SignRequest{CSR: good, TTL: 200 * 365 * 24 * time.Hour, Credential: credA.Token}, StageRequest, ErrBadTTL},
		{"namespace without service account", SignRequest{CSR: good, Identity: Identity{Namespace: "shop"}, Credential: credA.Token}, StageRequest, ErrPartialIdentity},
		{"service account without namespace", SignRequest{CSR: good, Identity: Identity{ServiceAccount: "frontend"}, Credential: credA.Token}, StageRequest, ErrPartialIdentity},

		// 2. CSR.
		{"not PEM", SignRequest{CSR: []byte("hello"), Credential: credA.Token}, StageCSR, ErrCSRNotPEM},
		{"wrong PEM type", SignRequest{CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), Credential: credA.Token}, StageCSR, ErrCSRNotPEM},
		{"two CSRs", SignRequest{CSR: append(bytes.Clone(good), good...), Credential: credA.Token}, StageCSR, ErrCSRNotPEM},
		{"trailing garbage", SignRequest{CSR: append(bytes.Clone(good), "junk"...), Credential: credA.Token}, StageCSR, ErrCSRNotPEM},
		{"garbage DER", SignRequest{CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), Credential: credA.Token}, StageCSR, ErrCSRParse},
		{"bad signature", SignRequest{CSR: badSig, Credential: credA.Token}, StageCSR, ErrCSRSignature},
		{"P-224 key", SignRequest{CSR: makeCSR(t, csrSpec{key: p224, uris: []string{uriA}}), Credential: credA.Token}, StageCSR, ErrCSRKeyType},
		{"RSA 1024 key", SignRequest{CSR: makeCSR(t, csrSpec{key: rsa1024, uris: []string{uriA}}), Credential: credA.Token}, StageCSR, ErrCSRKeyType},
		{"Ed25519 key", SignRequest{CSR: makeCSR(t, csrSpec{key: ed, uris: []string{uriA}}), Credential: credA.Token}, StageCSR, ErrCSRKeyType},
		{"no SAN", SignRequest{CSR: makeCSR(t, csrSpec{}), Credential: credA.Token}, StageCSR, ErrCSRURISAN},
		{"two URI SANs", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA, workloadURI(td, "shop", "other")}}), Credential: credA.Token}, StageCSR, ErrCSRURISAN},
		{"DNS SAN too", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA}, dns: []string{"frontend.shop"}}), Credential: credA.Token}, StageCSR, ErrCSRExtraSAN},
		{"IP SAN too", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}}), Credential: credA.Token}, StageCSR, ErrCSRExtraSAN},
		{"email SAN too", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA}, emails: []string{"a@b.c"}}), Credential: credA.Token}, StageCSR, ErrCSRExtraSAN},
		{"https URI", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{"https://cluster.local/ns/shop/sa/frontend"}}), Credential: credA.Token}, StageCSR, ErrCSRURISAN},
		{"other trust domain", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{workloadURI("evil.example", "shop", "frontend")}}), Credential: credA.Token}, StageCSR, ErrCSRTrustDomain},
		{"short path", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{"spiffe://" + td + "/ns/shop"}}), Credential: credA.Token}, StageCSR, ErrCSRWorkloadPath},
		{"long path", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA + "/extra"}}), Credential: credA.Token}, StageCSR, ErrCSRWorkloadPath},
		{"wrong keywords", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{"spiffe://" + td + "/namespace/shop/sa/frontend"}}), Credential: credA.Token}, StageCSR, ErrCSRWorkloadPath},
		{"trust domain only", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{"spiffe://" + td}}), Credential: credA.Token}, StageCSR, ErrCSRWorkloadPath},
		{"query in URI", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uriA + "?x=1"}}), Credential: credA.Token}, StageCSR, ErrCSRURISAN},
		{"dot segment", SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{"spiffe://" + td + "/ns/../sa/frontend"}}), Credential: credA.Token}, StageCSR, ErrCSRURISAN},
		{"CSR differs from attested identity", SignRequest{CSR: good, Identity: Identity{"shop", "catalog"}, Credential: credA.Token}, StageCSR, ErrCSRURISAN},

		// 3. Credential.
		{"no credential", SignRequest{CSR: good}, StageCredential, ErrCredentialMissing},
		{"unknown token", SignRequest{CSR: good, Credential: tokenPrefix + strings.Repeat("A", 43)}, StageCredential, ErrCredentialUnknown},
		{"foreign token", SignRequest{CSR: good, Credential: "eyJhbGciOi.jwt.lookalike"}, StageCredential, ErrCredentialUnknown},
		{"revoked", SignRequest{CSR: good, Credential: revoked.Token}, StageCredential, ErrCredentialRevoked},
		{"other proxy", SignRequest{CSR: good, Credential: credA.Token, ProxyID: "proxy-x"}, StageCredential, ErrCredentialWrongProxy},

		// 4. Identity match.
		{"credential of B for A", SignRequest{CSR: good, Credential: credB.Token}, StageIdentity, ErrIdentityMismatch},
		{"attested A with credential of B", SignRequest{CSR: good, Identity: Identity{"shop", "frontend"}, Credential: credB.Token}, StageIdentity, ErrIdentityMismatch},

		// Success.
		{"P-256", SignRequest{CSR: good, Credential: credA.Token}, 0, nil},
		{"P-256 with attested identity and proxy", SignRequest{CSR: good, Identity: Identity{"shop", "frontend"}, Credential: credA.Token, ProxyID: "proxy-a"}, 0, nil},
		{"P-384", SignRequest{CSR: makeCSR(t, csrSpec{key: p384, uris: []string{uriA}}), Credential: credA.Token}, 0, nil},
		{"RSA 2048", SignRequest{CSR: makeCSR(t, csrSpec{key: rsa2048, uris: []string{uriA}}), Credential: credA.Token}, 0, nil},
		{"CSR with surrounding whitespace", SignRequest{CSR: append(append([]byte("\n"), good...), "\n\n"...), Credential: credA.Token}, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svid, err := ca.Sign(ctx, tc.req)
			if tc.wantStage != 0 {
				if svid != nil {
					t.Errorf("got an SVID with error %v", err)
				}
				checkSignError(t, err, tc.wantStage, tc.wantReason)
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if got := svid.ID.String(); got != uriA {
				t.Errorf("ID = %s, want %s", got, uriA)
			}
			if _, err := verifySVID(t, ca.TrustDomain(), svid.Chain, ca.Bundle(), time.Now()); err != nil {
				t.Errorf("x509svid.Verify: %v", err)
			}
		})
	}
}

func TestIdentityErrorDetails(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("a", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ca.Sign(context.Background(), SignRequest{
		CSR:        makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "b", "bob")}}),
		Credential: cred.Token,
	})
	var ie *IdentityError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *IdentityError", err)
	}
	want := IdentityError{Credential: Identity{"a", "alice"}, Requested: Identity{"b", "bob"}}
	if diff := cmp.Diff(want, *ie); diff != "" {
		t.Errorf("IdentityError (-want +got):\n%s", diff)
	}
}

// A request failing several checks reports the earliest one, so e.g. a bad credential
// is never revealed (or probed) with a malformed request.
func TestSignCheckOrder(t *testing.T) {
	ca := newTestCA(t, Options{})
	credOther, err := ca.IssueCredential("x", "other", "")
	if err != nil {
		t.Fatal(err)
	}
	badCSR := makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "shop", "a")}, dns: []string{"x"}})
	goodCSR := makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "shop", "a")}})
	tests := []struct {
		name      string
		req       SignRequest
		wantStage Stage
	}{
		{"shape and credential", SignRequest{TTL: -1, CSR: goodCSR, Credential: "bogus"}, StageRequest},
		{"shape, CSR, credential", SignRequest{TTL: -1, CSR: badCSR}, StageRequest},
		{"empty CSR and no credential", SignRequest{}, StageRequest},
		{"CSR and credential", SignRequest{CSR: badCSR, Credential: "bogus"}, StageCSR},
		{"CSR and identity", SignRequest{CSR: badCSR, Credential: credOther.Token}, StageCSR},
		{"credential and identity", SignRequest{CSR: goodCSR, Credential: "bogus"}, StageCredential},
		{"identity only", SignRequest{CSR: goodCSR, Credential: credOther.Token}, StageIdentity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Sign(context.Background(), tc.req)
			var se *SignError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SignError", err)
			}
			if se.Stage != tc.wantStage {
				t.Errorf("stage = %s, want %s (%v)", se.Stage, tc.wantStage, err)
			}
		})
	}
}

// leafShape is the part of an issued leaf the tests pin down.
type leafShape struct {
	URIs        []string
	IsCA        bool
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	NotBefore   time.Time
	NotAfter    time.Time
}

func shapeOf(c *x509.Certificate) leafShape {
	s := leafShape{IsCA: c.IsCA, KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
	for _, u := range c.URIs {
		s.URIs = append(s.URIs, u.String())
	}
	return s
}

func TestSignTTLAndLeafShape(t *testing.T) {
	clock := newTestClock()
	now := clock.Now()
	uri := workloadURI("mesh.test", "ns1", "sa1")
	tests := []struct {
		name        string
		workloadTTL time.Duration
		requested   time.Duration
		wantTTL     time.Duration
		wantBack    time.Duration
	}{
		{"default 24h", 0, 0, 24 * time.Hour, time.Minute},
		{"shorter than max", 0, time.Hour, time.Hour, time.Minute},
		{"capped to 24h", 0, 72 * time.Hour, 24 * time.Hour, time.Minute},
		{"seconds for tests", 5 * time.Second, 0, 5 * time.Second, 500 * time.Millisecond},
		{"capped to seconds", 5 * time.Second, time.Hour, 5 * time.Second, 500 * time.Millisecond},
		{"below the cap", 10 * time.Second, 4 * time.Second, 4 * time.Second, 400 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, Options{TrustDomain: "mesh.test", WorkloadTTL: tc.workloadTTL, Clock: clock.Now})
			cred, err := ca.IssueCredential("ns1", "sa1", "")
			if err != nil {
				t.Fatal(err)
			}
			svid, err := ca.Sign(context.Background(), SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{uri}}), TTL: tc.requested, Credential: cred.Token})
			if err != nil {
				t.Fatal(err)
			}
			want := leafShape{
				URIs:        []string{uri},
				KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				// Certificates have second precision.
				NotBefore: now.Add(-tc.wantBack).Truncate(time.Second),
				NotAfter:  now.Add(tc.wantTTL),
			}
			if diff := cmp.Diff(want, shapeOf(svid.Leaf)); diff != "" {
				t.Errorf("leaf (-want +got):\n%s", diff)
			}
			if len(svid.Chain) != 1 || !svid.Chain[0].Equal(svid.Leaf) {
				t.Errorf("chain of a root CA should be the leaf alone, got %d certs", len(svid.Chain))
			}
			if !svid.Leaf.BasicConstraintsValid || svid.Leaf.IsCA {
				t.Errorf("leaf must carry basicConstraints CA:false")
			}
			// Valid now, expired right after NotAfter: the injected clock is what counts.
			if _, err := verifySVID(t, ca.TrustDomain(), svid.Chain, ca.Bundle(), now); err != nil {
				t.Errorf("verify at issue time: %v", err)
			}
			if _, err := verifySVID(t, ca.TrustDomain(), svid.Chain, ca.Bundle(), now.Add(tc.wantTTL+time.Second)); err == nil {
				t.Errorf("verify after expiry succeeded")
			}
		})
	}
}

func TestSignCanceledContext(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("a", "b", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ca.Sign(ctx, SignRequest{CSR: makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "a", "b")}}), Credential: cred.Token})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestGenerateKeyAndCSRRoundTrip(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("shop", "web", "p1")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Sign(context.Background(), SignRequest{CSR: csrPEM, Credential: cred.Token, ProxyID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, id, err := ParseSVID(svid.ChainPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if id != cred.SPIFFEID {
		t.Errorf("id = %s, want %s", id, cred.SPIFFEID)
	}
	if len(cert.Certificate) != 1 || cert.Leaf == nil || cert.PrivateKey == nil {
		t.Errorf("tls.Certificate incomplete: %d certs, leaf %v", len(cert.Certificate), cert.Leaf != nil)
	}
	if _, _, err := GenerateKeyAndCSR("not a spiffe id"); err == nil {
		t.Error("GenerateKeyAndCSR accepted a non-SPIFFE ID")
	}
	// A key that does not belong to the chain is rejected.
	otherKey, _, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseSVID(svid.ChainPEM(), otherKey); !errors.Is(err, ErrInvalidSVID) {
		t.Errorf("ParseSVID with foreign key: err = %v, want ErrInvalidSVID", err)
	}
}
