package ca

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestIssueCredential(t *testing.T) {
	ca := newTestCA(t, Options{})
	a, err := ca.IssueCredential("shop", "web", "proxy-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.IssueCredential("shop", "web", "proxy-1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Token == b.Token || a.ID == b.ID {
		t.Error("two credentials share a token or ID")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(a.Token, tokenPrefix))
	if err != nil || len(raw)*8 < 256 {
		t.Errorf("token carries %d random bits (err %v), want >= 256", len(raw)*8, err)
	}
	if got, want := a.SPIFFEID.String(), "spiffe://cluster.local/ns/shop/sa/web"; got != want {
		t.Errorf("SPIFFEID = %s, want %s", got, want)
	}
	if strings.Contains(a.Token, a.ID) {
		t.Error("ID is a substring of the secret token")
	}
	// Only hashes are stored.
	ca.creds.mu.Lock()
	dump := fmt.Sprintf("%#v %v", ca.creds.byHash, ca.creds.byHash)
	ca.creds.mu.Unlock()
	if strings.Contains(dump, strings.TrimPrefix(a.Token, tokenPrefix)) {
		t.Error("credential store holds the token in clear")
	}

	for _, bad := range []Identity{{"", "web"}, {"shop", ""}, {"a/b", "web"}, {"shop", "we b"}, {"..", "web"}} {
		if _, err := ca.IssueCredential(bad.Namespace, bad.ServiceAccount, ""); !errors.Is(err, ErrInvalidIdentity) {
			t.Errorf("IssueCredential(%q, %q): err = %v, want ErrInvalidIdentity", bad.Namespace, bad.ServiceAccount, err)
		}
	}
}

func TestCredentialLifecycle(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("shop", "web", "") // unbound: first redemption binds
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, csrSpec{uris: []string{cred.SPIFFEID.String()}})
	steps := []struct {
		name       string
		proxyID    string
		revokeNow  bool
		wantReason error // nil: success
	}{
		{"first redemption binds proxy-1", "proxy-1", false, nil},
		{"rotation by proxy-1", "proxy-1", false, nil},
		{"another proxy", "proxy-2", false, ErrCredentialWrongProxy},
		{"rotation again", "proxy-1", false, nil},
		{"no proxy ID named", "", false, nil},
		{"after revocation", "proxy-1", true, ErrCredentialRevoked},
	}
	for _, s := range steps {
		if s.revokeNow {
			if err := ca.RevokeCredential(cred.Token); err != nil {
				t.Fatal(err)
			}
		}
		_, err := ca.Sign(context.Background(), SignRequest{CSR: csr, Credential: cred.Token, ProxyID: s.proxyID})
		switch {
		case s.wantReason == nil && err != nil:
			t.Errorf("%s: %v", s.name, err)
		case s.wantReason != nil:
			if !errors.Is(err, s.wantReason) || !errors.Is(err, ErrInvalidCredential) {
				t.Errorf("%s: err = %v, want %v", s.name, err, s.wantReason)
			}
		}
	}
	if err := ca.RevokeCredential(tokenPrefix + "unknown"); !errors.Is(err, ErrCredentialUnknown) {
		t.Errorf("revoke unknown: err = %v", err)
	}
}

func TestVerifyCredential(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("shop", "web", "proxy-1")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.VerifyCredential(cred.Token, "proxy-1")
	if err != nil || id != (Identity{"shop", "web"}) {
		t.Errorf("VerifyCredential = %v, %v", id, err)
	}
	if _, err := ca.VerifyCredential(cred.Token, "proxy-2"); !errors.Is(err, ErrCredentialWrongProxy) {
		t.Errorf("other proxy: err = %v", err)
	}
	if _, err := ca.VerifyCredential("", ""); !errors.Is(err, ErrCredentialMissing) {
		t.Errorf("empty: err = %v", err)
	}
	// A token that differs in one character is unknown.
	forged := cred.Token[:len(cred.Token)-1] + string(cred.Token[len(cred.Token)-1]^1)
	if _, err := ca.VerifyCredential(forged, ""); !errors.Is(err, ErrCredentialUnknown) {
		t.Errorf("forged: err = %v", err)
	}
}

// Two proxies racing to redeem the same unbound credential: exactly one wins.
func TestCredentialBindRace(t *testing.T) {
	ca := newTestCA(t, Options{})
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, csrSpec{uris: []string{cred.SPIFFEID.String()}})
	const racers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins = map[string]int{}
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proxy := fmt.Sprintf("proxy-%d", i%2)
			if _, err := ca.Sign(context.Background(), SignRequest{CSR: csr, Credential: cred.Token, ProxyID: proxy}); err == nil {
				mu.Lock()
				wins[proxy]++
				mu.Unlock()
			} else if !errors.Is(err, ErrCredentialWrongProxy) {
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Errorf("winners = %v, want exactly one proxy", wins)
	}
}
