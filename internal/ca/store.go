package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names. The plug-in names are Istio's (istio-system/cacerts); the root names
// are skein's own.
const (
	PluginCertFile  = "ca-cert.pem"
	PluginKeyFile   = "ca-key.pem"
	PluginRootFile  = "root-cert.pem"
	PluginChainFile = "cert-chain.pem"

	RootCertFile      = "root-cert.pem"
	RootKeyFile       = "root-key.pem"
	PreviousRootsFile = "previous-roots.pem"
)

// LoadOrCreate returns a CA backed by dir. If dir holds any of Istio's plug-in files
// (ca-cert.pem, ca-key.pem, cert-chain.pem) all four must be there and valid, and the
// CA signs with that intermediate. Otherwise it loads root-cert.pem + root-key.pem,
// creating a new self-signed root (ECDSA P-256, 10 years) when neither exists.
func LoadOrCreate(dir string, opts Options) (*CA, error) {
	opts, td, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: empty state directory", ErrInvalidOptions)
	}
	c := &CA{opts: opts, td: td, dir: dir}
	c.creds.init()

	plugin, err := anyExists(dir, PluginCertFile, PluginKeyFile, PluginChainFile)
	if err != nil {
		return nil, err
	}
	var a *authority
	if plugin {
		c.plugin = true
		a, err = loadPlugin(dir, opts.Clock())
		if err == nil {
			warnLooseKey(opts, filepath.Join(dir, PluginKeyFile))
			opts.Logger.Info("ca: using plug-in intermediate", "dir", dir,
				"subject", a.cert.Subject.String(), "notAfter", a.cert.NotAfter, "roots", len(a.bundle))
		}
	} else {
		a, err = c.loadOrCreateRoot()
	}
	if err != nil {
		return nil, err
	}
	a.issued = &issuedUntil{}
	if len(a.previousRoots) > 0 {
		// SVIDs issued by a previous root before this start may live one more TTL.
		before := &issuedUntil{}
		before.observe(opts.Clock().Add(opts.WorkloadTTL))
		a.prevIssued = []*issuedUntil{before}
	}
	c.current.Store(a)
	return c, nil
}

func anyExists(dir string, names ...string) (bool, error) {
	for _, n := range names {
		_, err := os.Stat(filepath.Join(dir, n))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("ca: %w", err)
		}
	}
	return false, nil
}

func warnLooseKey(opts Options, path string) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		opts.Logger.Warn("ca: private key file is readable by group or others", "path", path, "mode", st.Mode().Perm().String())
	}
}

// loadPlugin reads and validates Istio's plug-in layout: the key matches ca-cert, ca-cert
// is a CA, and ca-cert chains through cert-chain.pem to a root in root-cert.pem.
func loadPlugin(dir string, now time.Time) (*authority, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ca: %w in %s: %s", ErrPluginLayout, dir, fmt.Sprintf(format, args...))
	}
	certs := map[string][]*x509.Certificate{}
	for _, name := range []string{PluginCertFile, PluginRootFile, PluginChainFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, bad("%v", err)
		}
		cs, err := parseCertsPEM(b)
		if err != nil {
			return nil, bad("%s: %v", name, err)
		}
		certs[name] = cs
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, PluginKeyFile))
	if err != nil {
		return nil, bad("%v", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, bad("%s: %v", PluginKeyFile, err)
	}
	if len(certs[PluginCertFile]) != 1 {
		return nil, bad("%s holds %d certificates, want 1", PluginCertFile, len(certs[PluginCertFile]))
	}
	cert := certs[PluginCertFile][0]
	if err := checkSigner(cert, key, now); err != nil {
		return nil, bad("%s: %v", PluginCertFile, err)
	}

	roots := certs[PluginRootFile]
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	// cert-chain.pem is ca-cert followed by its issuers, usually ending with the root;
	// SVID chains carry only what is between the leaf and a root.
	var intermediates []*x509.Certificate
	for _, ch := range certs[PluginChainFile] {
		if ch.Equal(cert) || isIn(ch, roots) {
			continue
		}
		intermediates = append(intermediates, ch)
	}
	interPool := x509.NewCertPool()
	for _, ic := range intermediates {
		interPool.AddCert(ic)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, bad("%s does not verify to %s via %s: %v", PluginCertFile, PluginRootFile, PluginChainFile, err)
	}
	return &authority{cert: cert, key: key, intermediates: intermediates, bundle: roots}, nil
}

func isIn(c *x509.Certificate, set []*x509.Certificate) bool {
	for _, s := range set {
		if s.Equal(c) {
			return true
		}
	}
	return false
}

// checkSigner verifies that cert can sign workload certificates with key.
func checkSigner(cert *x509.Certificate, key crypto.Signer, now time.Time) error {
	type publicKeyEqualer interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(publicKeyEqualer)
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("private key does not match certificate")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate key usage lacks certSign")
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate valid only from %s to %s", cert.NotBefore, cert.NotAfter)
	}
	return nil
}

func (c *CA) loadOrCreateRoot() (*authority, error) {
	certPath, keyPath := filepath.Join(c.dir, RootCertFile), filepath.Join(c.dir, RootKeyFile)
	haveCert, err := anyExists(c.dir, RootCertFile)
	if err != nil {
		return nil, err
	}
	haveKey, err := anyExists(c.dir, RootKeyFile)
	if err != nil {
		return nil, err
	}
	if haveCert != haveKey {
		return nil, fmt.Errorf("ca: %w in %s: need both %s and %s or neither", ErrRootFiles, c.dir, RootCertFile, RootKeyFile)
	}
	if !haveCert {
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		cert, key, err := newRoot(c.td.Name(), c.opts.Clock())
		if err != nil {
			return nil, err
		}
		if err := writeRoot(c.dir, cert, key); err != nil {
			return nil, err
		}
		c.opts.Logger.Info("ca: generated root", "dir", c.dir, "serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter)
		return &authority{cert: cert, key: key, bundle: []*x509.Certificate{cert}}, nil
	}

	bad := func(format string, args ...any) error {
		return fmt.Errorf("ca: %w in %s: %s", ErrRootFiles, c.dir, fmt.Sprintf(format, args...))
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, bad("%v", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, bad("%v", err)
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, bad("%s must hold exactly one certificate (%v)", RootCertFile, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, bad("%s: %v", RootKeyFile, err)
	}
	root := certs[0]
	if err := checkSigner(root, key, c.opts.Clock()); err != nil {
		return nil, bad("%s: %v", RootCertFile, err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, bad("%s is not self-signed: %v", RootCertFile, err)
	}
	warnLooseKey(c.opts, keyPath)
	var previous []*x509.Certificate
	if b, err := os.ReadFile(filepath.Join(c.dir, PreviousRootsFile)); err == nil {
		if previous, err = parseCertsPEM(b); err != nil {
			return nil, bad("%s: %v", PreviousRootsFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, bad("%v", err)
	}
	c.opts.Logger.Info("ca: loaded root", "dir", c.dir, "serial", root.SerialNumber.Text(16), "previousRoots", len(previous))
	a := &authority{
		cert:          root,
		key:           key,
		bundle:        append([]*x509.Certificate{root}, previous...),
		previousRoots: previous,
	}
	if err := c.loadNextRoot(a); err != nil {
		return nil, err
	}
	return a, nil
}

// RotateRoot replaces the root: with the root PrepareRootRotation prepared, else with a
// new one. The old root stays in the bundle (and in previous-roots.pem) so certificates
// issued before keep verifying until DropPreviousRoots; new SVIDs are signed by the new
// root at once. Without a prepared root, peers that have not received the new bundle
// yet reject the new SVIDs: prepare, distribute the bundle, then rotate.
func (c *CA) RotateRoot() error {
	if c.plugin {
		return fmt.Errorf("ca: %w", ErrPluggedCA)
	}
	c.rotate.Lock()
	defer c.rotate.Unlock()
	old := c.current.Load()
	cert, key := old.next, old.nextKey
	if cert == nil {
		var err error
		if cert, key, err = newRoot(c.td.Name(), c.opts.Clock()); err != nil {
			return err
		}
	}
	previous := append([]*x509.Certificate{old.cert}, old.previousRoots...)
	// Persist the overlap first: a crash after this still trusts the old root.
	if err := writeFileAtomic(filepath.Join(c.dir, PreviousRootsFile), encodeCerts(previous), 0o644); err != nil {
		return err
	}
	if err := writeRoot(c.dir, cert, key); err != nil {
		return err
	}
	if err := removeNextRoot(c.dir); err != nil {
		return err
	}
	c.current.Store(&authority{
		cert:          cert,
		key:           key,
		bundle:        append([]*x509.Certificate{cert}, previous...),
		previousRoots: previous,
		issued:        &issuedUntil{},
		prevIssued:    append([]*issuedUntil{old.issued}, old.prevIssued...),
	})
	c.opts.Logger.Info("ca: rotated root", "serial", cert.SerialNumber.Text(16), "previousRoots", len(previous))
	return nil
}

// DropPreviousRoots ends the overlap after a rotation: only the current root stays
// trusted. Call it once every workload holds an SVID from the new root.
func (c *CA) DropPreviousRoots() error {
	if c.plugin {
		return fmt.Errorf("ca: %w", ErrPluggedCA)
	}
	c.rotate.Lock()
	defer c.rotate.Unlock()
	old := c.current.Load()
	if err := os.Remove(filepath.Join(c.dir, PreviousRootsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ca: %w", err)
	}
	c.current.Store(&authority{cert: old.cert, key: old.key, bundle: bundleOf(old.cert, old.next, nil),
		next: old.next, nextKey: old.nextKey, issued: old.issued})
	c.opts.Logger.Info("ca: dropped previous roots", "count", len(old.previousRoots))
	return nil
}

func newRoot(trustDomain string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"skein"}, CommonName: "skein root CA " + trustDomain},
		NotBefore:             now.Add(-maxBackdate),
		NotAfter:              now.Add(rootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse root: %w", err)
	}
	return cert, key, nil
}

// writeRoot writes the key (0600) before the certificate, both atomically.
func writeRoot(dir string, cert *x509.Certificate, key crypto.Signer) error {
	return writeKeyAndCert(dir, RootKeyFile, RootCertFile, cert, key)
}

func writeKeyAndCert(dir, keyFile, certFile string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: marshal root key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certFile), encodeCerts([]*x509.Certificate{cert}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	// CreateTemp makes the file 0600; loosen only for public files.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("ca: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ca: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits, as the CA/Browser forum asks for at least 64.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// parseCertsPEM parses every CERTIFICATE block; other blocks or trailing garbage are errors.
func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after PEM blocks")
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates")
	}
	return certs, nil
}

// parseKeyPEM accepts PKCS#8, SEC1 (EC) and PKCS#1 (RSA) keys, as Istio's tools write all three.
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}
