package ca

import (
	"context"
	"encoding/pem"
	"errors"
	"testing"
)

// FuzzSignCSR feeds arbitrary bytes as a CSR, both as given and wrapped as the DER of a
// PEM block: Sign must never panic and must fail only with a *SignError.
func FuzzSignCSR(f *testing.F) {
	ca := newTestCA(f, Options{})
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		f.Fatal(err)
	}
	good := makeCSR(f, csrSpec{uris: []string{cred.SPIFFEID.String()}})
	block, _ := pem.Decode(good)
	f.Add(good)
	f.Add(block.Bytes)
	f.Add(makeCSR(f, csrSpec{uris: []string{"spiffe://cluster.local/ns/a/sa/b", "https://x"}, dns: []string{"x"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte(""))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, csr := range [][]byte{data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: data})} {
			svid, err := ca.Sign(context.Background(), SignRequest{CSR: csr, Credential: cred.Token})
			if err != nil {
				var se *SignError
				if !errors.As(err, &se) {
					t.Fatalf("untyped error %T: %v", err, err)
				}
				continue
			}
			// Anything accepted must be exactly the credential's identity.
			if svid.ID != cred.SPIFFEID {
				t.Fatalf("issued %s for a credential of %s", svid.ID, cred.SPIFFEID)
			}
		}
	})
}

// FuzzParseSVID: arbitrary chain and key PEM never panic and fail only with ErrInvalidSVID.
func FuzzParseSVID(f *testing.F) {
	ca := newTestCA(f, Options{})
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		f.Fatal(err)
	}
	key, csr, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		f.Fatal(err)
	}
	svid, err := ca.Sign(context.Background(), SignRequest{CSR: csr, Credential: cred.Token})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(svid.ChainPEM(), key)
	f.Add(ca.BundlePEM(), key) // a CA certificate is not an SVID
	f.Add(svid.ChainPEM(), []byte("garbage"))
	f.Add([]byte(""), []byte(""))

	f.Fuzz(func(t *testing.T, chainPEM, keyPEM []byte) {
		cert, id, err := ParseSVID(chainPEM, keyPEM)
		if err != nil {
			if !errors.Is(err, ErrInvalidSVID) {
				t.Fatalf("error does not wrap ErrInvalidSVID: %v", err)
			}
			return
		}
		if id.IsZero() || cert.Leaf == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 {
			t.Fatalf("success with incomplete result: id=%q leaf=%v", id, cert.Leaf != nil)
		}
	})
}
