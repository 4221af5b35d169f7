package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Files of a prepared (not yet signing) root.
const (
	NextRootCertFile = "next-root-cert.pem"
	NextRootKeyFile  = "next-root-key.pem"
)

// ErrNoPreparedRoot is returned by RotateRoot's callers that insist on promoting a
// prepared root (CompleteRootRotation) when none was prepared.
var ErrNoPreparedRoot = errors.New("no prepared root: call PrepareRootRotation first")

// issuedUntil tracks the latest NotAfter of the SVIDs an authority signed, so the
// runtime can tell when a root no longer backs any live certificate.
type issuedUntil struct{ unixNano atomic.Int64 }

func (u *issuedUntil) observe(t time.Time) {
	n := t.UnixNano()
	for {
		cur := u.unixNano.Load()
		if n <= cur || u.unixNano.CompareAndSwap(cur, n) {
			return
		}
	}
}

func (u *issuedUntil) get() time.Time {
	if u == nil || u.unixNano.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(0, u.unixNano.Load())
}

// PrepareRootRotation is the first step of a root rotation without failed handshakes:
// it generates the next root and adds it to the trust bundle, while the current root
// keeps signing. Push the new bundle to every workload, then call RotateRoot, which
// promotes the prepared root; from then on new SVIDs verify everywhere. Calling it
// again replaces a prepared root that was never promoted.
func (c *CA) PrepareRootRotation() error {
	if c.plugin {
		return fmt.Errorf("ca: %w", ErrPluggedCA)
	}
	c.rotate.Lock()
	defer c.rotate.Unlock()
	cur := c.current.Load()
	cert, key, err := newRoot(c.td.Name(), c.opts.Clock())
	if err != nil {
		return err
	}
	if err := writeKeyAndCert(c.dir, NextRootKeyFile, NextRootCertFile, cert, key); err != nil {
		return err
	}
	next := *cur
	next.next, next.nextKey = cert, key
	next.bundle = bundleOf(cur.cert, cert, cur.previousRoots)
	c.current.Store(&next)
	c.opts.Logger.Info("ca: prepared next root", "serial", cert.SerialNumber.Text(16))
	return nil
}

// PreparedRoot returns the prepared next root, or nil.
func (c *CA) PreparedRoot() *x509.Certificate { return c.current.Load().next }

// PreviousRootsValidUntil is when the last SVID signed by a root that is now only kept
// for the overlap expires, as far as this process knows: SVIDs it issued before a
// restart count as valid for a full WorkloadTTL after the CA was loaded. Zero when
// there are no previous roots. Dropping previous roots earlier breaks those SVIDs.
func (c *CA) PreviousRootsValidUntil() time.Time {
	a := c.current.Load()
	if len(a.previousRoots) == 0 {
		return time.Time{}
	}
	var until time.Time
	for _, u := range a.prevIssued {
		if t := u.get(); t.After(until) {
			until = t
		}
	}
	return until
}

func bundleOf(current, next *x509.Certificate, previous []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{current}
	if next != nil {
		out = append(out, next)
	}
	return append(out, previous...)
}

// loadNextRoot reads a prepared root, if its files exist.
func (c *CA) loadNextRoot(a *authority) error {
	haveCert, err := anyExists(c.dir, NextRootCertFile)
	if err != nil {
		return err
	}
	haveKey, err := anyExists(c.dir, NextRootKeyFile)
	if err != nil {
		return err
	}
	if !haveCert && !haveKey {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ca: %w in %s: %s", ErrRootFiles, c.dir, fmt.Sprintf(format, args...))
	}
	if haveCert != haveKey {
		return bad("need both %s and %s or neither", NextRootCertFile, NextRootKeyFile)
	}
	certPEM, err := os.ReadFile(filepath.Join(c.dir, NextRootCertFile))
	if err != nil {
		return bad("%v", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(c.dir, NextRootKeyFile))
	if err != nil {
		return bad("%v", err)
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil || len(certs) != 1 {
		return bad("%s must hold exactly one certificate (%v)", NextRootCertFile, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return bad("%s: %v", NextRootKeyFile, err)
	}
	if err := checkSigner(certs[0], key, c.opts.Clock()); err != nil {
		return bad("%s: %v", NextRootCertFile, err)
	}
	a.next, a.nextKey = certs[0], key
	a.bundle = bundleOf(a.cert, a.next, a.previousRoots)
	return nil
}

func removeNextRoot(dir string) error {
	for _, n := range []string{NextRootCertFile, NextRootKeyFile} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: %w", err)
		}
	}
	return nil
}
