package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// GenerateKeyAndCSR makes a fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR for spiffeID
// carrying it as the only SAN — what a proxy sends to the CA.
func GenerateKeyAndCSR(spiffeID string) (keyPEM, csrPEM []byte, err error) {
	id, err := spiffeid.FromString(spiffeID)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: CSR for %q: %w", spiffeID, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: create CSR: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseSVID turns a PEM chain (leaf first) and its PEM private key into a
// tls.Certificate, checking with go-spiffe that it is a valid X.509 SVID: exactly one
// SPIFFE ID URI SAN, not a CA, digitalSignature usage, and a key that matches.
// It does not verify the chain against a bundle; peers do that.
func ParseSVID(chainPEM, keyPEM []byte) (tls.Certificate, spiffeid.ID, error) {
	svid, err := x509svid.Parse(chainPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, spiffeid.ID{}, fmt.Errorf("ca: %w: %w", ErrInvalidSVID, err)
	}
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, svid.ID, nil
}
