package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type credBackend struct {
	Backend
	got CredentialRequest
}

func (b *credBackend) IssueCredential(r CredentialRequest) (Credential, error) {
	b.got = r
	if r.ProxyID == "" {
		return Credential{}, errors.New("proxyID is required")
	}
	return Credential{Token: "tok", SPIFFEID: "spiffe://cluster.local/ns/" + r.Namespace + "/sa/" + r.ServiceAccount, ProxyID: r.ProxyID}, nil
}

// TestIssueCredential: the client and the handler agree, errors come back as such,
// and unknown request fields are refused.
func TestIssueCredential(t *testing.T) {
	b := &credBackend{}
	srv := httptest.NewServer(Handler(b))
	defer srv.Close()
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"))
	got, err := c.IssueCredential(context.Background(), CredentialRequest{Namespace: "default", ServiceAccount: "catalog", ProxyID: "catalog-0.default"})
	if err != nil || got.Token != "tok" || got.SPIFFEID != "spiffe://cluster.local/ns/default/sa/catalog" || b.got.ProxyID != "catalog-0.default" {
		t.Fatalf("IssueCredential = %+v, %v (backend got %+v)", got, err, b.got)
	}
	if _, err := c.IssueCredential(context.Background(), CredentialRequest{Namespace: "default"}); err == nil || !strings.Contains(err.Error(), "proxyID is required") {
		t.Errorf("without proxy id: %v, want the backend's error", err)
	}
	resp, err := http.Post(srv.URL+"/api/ca/credentials", "application/json", strings.NewReader(`{"proxyID":"x","ttl":"1h"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400", resp.StatusCode)
	}
}
