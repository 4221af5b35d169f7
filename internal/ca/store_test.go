package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCreateRootFilesAndReload(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	ca, err := LoadOrCreate(dir, Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if ca.Plugin() {
		t.Error("fresh dir reported as plug-in CA")
	}
	for name, want := range map[string]os.FileMode{RootKeyFile: 0o600, RootCertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
	root := ca.SigningCert()
	type rootShape struct {
		IsCA, SelfSigned bool
		Curve            string
		NotAfter         time.Time
	}
	got := rootShape{IsCA: root.IsCA, SelfSigned: root.CheckSignatureFrom(root) == nil, NotAfter: root.NotAfter.UTC()}
	if pk, ok := root.PublicKey.(*ecdsa.PublicKey); ok {
		got.Curve = pk.Curve.Params().Name
	}
	want := rootShape{IsCA: true, SelfSigned: true, Curve: "P-256", NotAfter: clock.Now().Add(rootLifetime)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("root (-want +got):\n%s", diff)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ca.BundlePEM(), keyPEM) || bytes.Contains(ca.BundlePEM(), []byte("PRIVATE KEY")) {
		t.Error("bundle leaks the root key")
	}

	// A second start reuses the same root.
	again, err := LoadOrCreate(dir, Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !again.SigningCert().Equal(root) {
		t.Error("reload generated a new root instead of loading the stored one")
	}
}

func TestLoadRootErrors(t *testing.T) {
	otherDir := t.TempDir()
	if _, err := LoadOrCreate(otherDir, Options{}); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(otherDir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
	}{
		{"key missing", func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, RootKeyFile)) }},
		{"cert missing", func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, RootCertFile)) }},
		{"key of another root", func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, RootKeyFile), otherKey, 0o600) }},
		{"garbage cert", func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, RootCertFile), []byte("nope"), 0o644) }},
		{"garbage key", func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, RootKeyFile), []byte("nope"), 0o600) }},
		{"garbage previous roots", func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, PreviousRootsFile), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir, Options{}); err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, dir)
			_, err := LoadOrCreate(dir, Options{})
			if !errors.Is(err, ErrRootFiles) {
				t.Errorf("err = %v, want ErrRootFiles", err)
			}
		})
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		opts Options
	}{
		{"empty dir", "", Options{}},
		{"bad trust domain", "x", Options{TrustDomain: "Not A Domain!"}},
		{"negative TTL", "x", Options{WorkloadTTL: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir != "" {
				dir = t.TempDir()
			}
			if _, err := LoadOrCreate(dir, tc.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestRootRotationOverlap(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	ca, err := LoadOrCreate(dir, Options{Clock: clock.Now, WorkloadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *SVID {
		t.Helper()
		svid, err := ca.Sign(context.Background(), SignRequest{
			CSR:        makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "shop", "web")}}),
			Credential: cred.Token,
		})
		if err != nil {
			t.Fatal(err)
		}
		return svid
	}
	oldRoot := ca.SigningCert()
	before := issue()

	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	newRoot := ca.SigningCert()
	if newRoot.Equal(oldRoot) {
		t.Fatal("RotateRoot kept the old root")
	}
	if st, err := os.Stat(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Error(err)
	} else if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("root key mode after rotation = %v, want 0600", got)
	}
	after := issue()
	if err := after.Leaf.CheckSignatureFrom(newRoot); err != nil {
		t.Errorf("SVID after rotation not signed by the new root: %v", err)
	}
	if diff := cmp.Diff([]string{serial(newRoot), serial(oldRoot)}, serials(ca.Bundle())); diff != "" {
		t.Errorf("bundle during overlap (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(serials(ca.Bundle()), serials(after.Bundle)); diff != "" {
		t.Errorf("SVID carries a different bundle (-want +got):\n%s", diff)
	}
	for name, s := range map[string]*SVID{"before": before, "after": after} {
		if _, err := verifySVID(t, ca.TrustDomain(), s.Chain, ca.Bundle(), clock.Now()); err != nil {
			t.Errorf("%s rotation: verify against overlapping bundle: %v", name, err)
		}
	}

	// The overlap survives a restart.
	reloaded, err := LoadOrCreate(dir, Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(serials(ca.Bundle()), serials(reloaded.Bundle())); diff != "" {
		t.Errorf("bundle after restart (-want +got):\n%s", diff)
	}

	// A second rotation keeps both older roots.
	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	if got := len(ca.Bundle()); got != 3 {
		t.Errorf("bundle after two rotations has %d roots, want 3", got)
	}

	if err := ca.DropPreviousRoots(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{serial(ca.SigningCert())}, serials(ca.Bundle())); diff != "" {
		t.Errorf("bundle after drop (-want +got):\n%s", diff)
	}
	latest := issue()
	if _, err := verifySVID(t, ca.TrustDomain(), latest.Chain, ca.Bundle(), clock.Now()); err != nil {
		t.Errorf("new SVID after drop: %v", err)
	}
	for name, s := range map[string]*SVID{"before": before, "after first rotation": after} {
		if _, err := verifySVID(t, ca.TrustDomain(), s.Chain, ca.Bundle(), clock.Now()); err == nil {
			t.Errorf("SVID from %s still verifies after DropPreviousRoots", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, PreviousRootsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still present after drop: %v", PreviousRootsFile, err)
	}
	reloaded, err = LoadOrCreate(dir, Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(serials(ca.Bundle()), serials(reloaded.Bundle())); diff != "" {
		t.Errorf("bundle after drop and restart (-want +got):\n%s", diff)
	}
}

// --- plug-in CA ---

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func makeCert(t *testing.T, name string, parent *testCert, isCA bool, now time.Time) *testCert {
	t.Helper()
	key := mustKey(t)
	sn, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if !isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, key: key}
}

func keyPEMOf(t *testing.T, k crypto.Signer, sec1 bool) []byte {
	t.Helper()
	if sec1 {
		der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writePlugin writes Istio's four files: ca-cert is signer, cert-chain is signer plus
// its issuers up to and including the root.
func writePlugin(t *testing.T, dir string, signer *testCert, issuers []*testCert, root *testCert, sec1 bool) {
	t.Helper()
	chain := []*x509.Certificate{signer.cert}
	for _, i := range issuers {
		chain = append(chain, i.cert)
	}
	chain = append(chain, root.cert)
	mustWrite(t, filepath.Join(dir, PluginCertFile), encodeCerts(chain[:1]), 0o644)
	mustWrite(t, filepath.Join(dir, PluginKeyFile), keyPEMOf(t, signer.key, sec1), 0o600)
	mustWrite(t, filepath.Join(dir, PluginRootFile), encodeCerts([]*x509.Certificate{root.cert}), 0o644)
	mustWrite(t, filepath.Join(dir, PluginChainFile), encodeCerts(chain), 0o644)
}

func TestPluginCA(t *testing.T) {
	clock := newTestClock()
	now := clock.Now()
	root := makeCert(t, "istio root", nil, true, now)
	inter := makeCert(t, "cluster intermediate", root, true, now)
	sub := makeCert(t, "sub intermediate", inter, true, now)

	tests := []struct {
		name      string
		signer    *testCert
		issuers   []*testCert
		sec1      bool
		wantChain []string // subjects, leaf excluded
	}{
		{"one intermediate", inter, nil, false, []string{"cluster intermediate"}},
		{"one intermediate, SEC1 key", inter, nil, true, []string{"cluster intermediate"}},
		{"two intermediates", sub, []*testCert{inter}, false, []string{"sub intermediate", "cluster intermediate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePlugin(t, dir, tc.signer, tc.issuers, root, tc.sec1)
			ca, err := LoadOrCreate(dir, Options{TrustDomain: "corp.example", Clock: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			if !ca.Plugin() {
				t.Error("Plugin() = false")
			}
			if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("plug-in mode wrote %s", RootKeyFile)
			}
			cred, err := ca.IssueCredential("shop", "web", "")
			if err != nil {
				t.Fatal(err)
			}
			svid, err := ca.Sign(context.Background(), SignRequest{
				CSR:        makeCSR(t, csrSpec{uris: []string{workloadURI("corp.example", "shop", "web")}}),
				Credential: cred.Token,
			})
			if err != nil {
				t.Fatal(err)
			}
			var gotChain []string
			for _, c := range svid.Chain[1:] {
				gotChain = append(gotChain, c.Subject.CommonName)
			}
			if diff := cmp.Diff(tc.wantChain, gotChain); diff != "" {
				t.Errorf("chain above leaf (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{serial(root.cert)}, serials(ca.Bundle())); diff != "" {
				t.Errorf("bundle (-want +got):\n%s", diff)
			}
			id, err := verifySVID(t, ca.TrustDomain(), svid.Chain, ca.Bundle(), now)
			if err != nil {
				t.Fatalf("x509svid.Verify: %v", err)
			}
			if got := id.String(); got != "spiffe://corp.example/ns/shop/sa/web" {
				t.Errorf("id = %s", got)
			}
			if err := ca.RotateRoot(); !errors.Is(err, ErrPluggedCA) {
				t.Errorf("RotateRoot on a plug-in CA: err = %v, want ErrPluggedCA", err)
			}
		})
	}
}

func TestPluginCAErrors(t *testing.T) {
	now := newTestClock().Now()
	root := makeCert(t, "root", nil, true, now)
	inter := makeCert(t, "inter", root, true, now)
	otherRoot := makeCert(t, "other root", nil, true, now)
	otherInter := makeCert(t, "other inter", otherRoot, true, now)
	leafNotCA := makeCert(t, "not a CA", root, false, now)

	tests := []struct {
		name  string
		write func(t *testing.T, dir string)
	}{
		{"only ca-cert.pem", func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, PluginCertFile), encodeCerts([]*x509.Certificate{inter.cert}), 0o644)
		}},
		{"cert-chain.pem missing", func(t *testing.T, dir string) {
			writePlugin(t, dir, inter, nil, root, false)
			mustRemove(t, filepath.Join(dir, PluginChainFile))
		}},
		{"root-cert.pem missing", func(t *testing.T, dir string) {
			writePlugin(t, dir, inter, nil, root, false)
			mustRemove(t, filepath.Join(dir, PluginRootFile))
		}},
		{"key does not match", func(t *testing.T, dir string) {
			writePlugin(t, dir, inter, nil, root, false)
			mustWrite(t, filepath.Join(dir, PluginKeyFile), keyPEMOf(t, otherInter.key, false), 0o600)
		}},
		{"ca-cert is not a CA", func(t *testing.T, dir string) {
			writePlugin(t, dir, leafNotCA, nil, root, false)
		}},
		{"chain does not reach root-cert", func(t *testing.T, dir string) {
			writePlugin(t, dir, otherInter, nil, otherRoot, false)
			mustWrite(t, filepath.Join(dir, PluginRootFile), encodeCerts([]*x509.Certificate{root.cert}), 0o644)
		}},
		{"garbage key", func(t *testing.T, dir string) {
			writePlugin(t, dir, inter, nil, root, false)
			mustWrite(t, filepath.Join(dir, PluginKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}},
		{"two certs in ca-cert.pem", func(t *testing.T, dir string) {
			writePlugin(t, dir, inter, nil, root, false)
			mustWrite(t, filepath.Join(dir, PluginCertFile), encodeCerts([]*x509.Certificate{inter.cert, root.cert}), 0o644)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.write(t, dir)
			_, err := LoadOrCreate(dir, Options{Clock: func() time.Time { return now }})
			if !errors.Is(err, ErrPluginLayout) {
				t.Errorf("err = %v, want ErrPluginLayout", err)
			}
			if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a broken plug-in layout fell back to generating a root")
			}
		})
	}
}

func serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func serials(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, serial(c))
	}
	return out
}

func mustWrite(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// Signing while the root rotates: every SVID verifies against the overlapping bundle.
func TestSignDuringRotation(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, csrSpec{uris: []string{cred.SPIFFEID.String()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan *SVID, 64)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for ctx.Err() == nil {
				s, err := ca.Sign(ctx, SignRequest{CSR: csr, Credential: cred.Token})
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					break
				}
				select {
				case results <- s:
				case <-ctx.Done():
				}
			}
			errs <- nil
		}()
	}
	var got []*SVID
	for i := 0; i < 3; i++ {
		if err := ca.RotateRoot(); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			got = append(got, <-results)
		}
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Sign during rotation: %v", err)
		}
	}
	bundle := ca.Bundle()
	if len(bundle) != 4 {
		t.Errorf("bundle has %d roots after 3 rotations, want 4", len(bundle))
	}
	for _, s := range got {
		if _, err := verifySVID(t, ca.TrustDomain(), s.Chain, bundle, time.Now()); err != nil {
			t.Errorf("SVID %s: %v", serial(s.Leaf), err)
		}
	}
}

// TestPreparedRootRotation: the prepared root is trusted before it signs; RotateRoot
// promotes exactly that root; the overlap's end is known; all of it survives a restart.
func TestPreparedRootRotation(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	ca, err := LoadOrCreate(dir, Options{Clock: clock.Now, WorkloadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *SVID {
		t.Helper()
		svid, err := ca.Sign(context.Background(), SignRequest{
			CSR:        makeCSR(t, csrSpec{uris: []string{workloadURI("cluster.local", "shop", "web")}}),
			Credential: cred.Token,
		})
		if err != nil {
			t.Fatal(err)
		}
		return svid
	}
	oldRoot := ca.SigningCert()
	if !ca.PreviousRootsValidUntil().IsZero() {
		t.Error("PreviousRootsValidUntil before any rotation should be zero")
	}
	if err := ca.PrepareRootRotation(); err != nil {
		t.Fatal(err)
	}
	next := ca.PreparedRoot()
	if next == nil || next.Equal(oldRoot) {
		t.Fatal("no new prepared root")
	}
	if diff := cmp.Diff([]string{serial(oldRoot), serial(next)}, serials(ca.Bundle())); diff != "" {
		t.Errorf("bundle while prepared (-want +got):\n%s", diff)
	}
	during := issue()
	if err := during.Leaf.CheckSignatureFrom(oldRoot); err != nil {
		t.Errorf("a prepared root must not sign yet: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, NextRootKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("prepared key file: %v %v", st, err)
	}
	// A restart keeps the prepared root.
	reloaded, err := LoadOrCreate(dir, Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if reloaded.PreparedRoot() == nil || !reloaded.PreparedRoot().Equal(next) {
		t.Error("prepared root lost on restart")
	}

	clock.Advance(time.Minute)
	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	if !ca.SigningCert().Equal(next) {
		t.Fatal("RotateRoot did not promote the prepared root")
	}
	if ca.PreparedRoot() != nil {
		t.Error("prepared root still set after rotation")
	}
	if _, err := os.Stat(filepath.Join(dir, NextRootCertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", NextRootCertFile, err)
	}
	if diff := cmp.Diff([]string{serial(next), serial(oldRoot)}, serials(ca.Bundle())); diff != "" {
		t.Errorf("bundle after promotion (-want +got):\n%s", diff)
	}
	if got, want := ca.PreviousRootsValidUntil(), during.Leaf.NotAfter; !got.Equal(want) {
		t.Errorf("PreviousRootsValidUntil = %v, want the last old-root SVID's NotAfter %v", got, want)
	}
	after := issue()
	if err := after.Leaf.CheckSignatureFrom(next); err != nil {
		t.Errorf("SVID after rotation: %v", err)
	}
	if got := ca.PreviousRootsValidUntil(); !got.Equal(during.Leaf.NotAfter) {
		t.Errorf("new-root SVIDs must not move PreviousRootsValidUntil: %v", got)
	}
	if err := ca.DropPreviousRoots(); err != nil {
		t.Fatal(err)
	}
	if !ca.PreviousRootsValidUntil().IsZero() {
		t.Error("PreviousRootsValidUntil after drop should be zero")
	}
}
