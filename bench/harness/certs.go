package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certFiles are the PEM files the nginx and HAProxy pairs use for mutual TLS between
// their two proxies: one CA, a server leaf for the inbound proxy and a client leaf for
// the outbound one. HAProxy wants certificate and key in one file (the *Bundle fields).
type certFiles struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	ServerBundle          string
	ClientBundle          string
}

// ServerName is the name the outbound proxy verifies in the inbound proxy's certificate.
const serverName = "bench-inbound.local"

// writeCerts generates a self-signed ECDSA P-256 CA and two leaves signed by it, valid for
// a day, into dir.
func writeCerts(dir string) (certFiles, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skein bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return certFiles{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return certFiles{}, err
	}
	f := certFiles{CA: filepath.Join(dir, "ca.pem")}
	if err := writePEM(f.CA, pemBlock("CERTIFICATE", caDER)); err != nil {
		return certFiles{}, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, prefix string) (cert, key, bundle string, err error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", "", err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			DNSNames:     []string{cn, "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return "", "", "", err
		}
		kDER, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return "", "", "", err
		}
		certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kDER)
		cert, key, bundle = filepath.Join(dir, prefix+".pem"), filepath.Join(dir, prefix+".key"), filepath.Join(dir, prefix+"-bundle.pem")
		for _, w := range []struct {
			path string
			b    []byte
		}{{cert, certPEM}, {key, keyPEM}, {bundle, append(append([]byte{}, certPEM...), keyPEM...)}} {
			if err := writePEM(w.path, w.b); err != nil {
				return "", "", "", err
			}
		}
		return cert, key, bundle, nil
	}
	if f.ServerCert, f.ServerKey, f.ServerBundle, err = leaf(2, serverName, x509.ExtKeyUsageServerAuth, "server"); err != nil {
		return certFiles{}, fmt.Errorf("server certificate: %w", err)
	}
	if f.ClientCert, f.ClientKey, f.ClientBundle, err = leaf(3, "bench-outbound.local", x509.ExtKeyUsageClientAuth, "client"); err != nil {
		return certFiles{}, fmt.Errorf("client certificate: %w", err)
	}
	return f, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
