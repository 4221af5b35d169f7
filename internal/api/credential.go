package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// CredentialBackend issues bootstrap credentials for proxies the backend does not
// start itself (skein control): the token a proxy presents (--ca-token-file) with its
// CSR to get its workload certificate. Whoever reaches the API can mint any identity,
// which is why it listens on loopback.
type CredentialBackend interface {
	IssueCredential(req CredentialRequest) (Credential, error)
}

// CredentialRequest names the identity and the proxy bound to it.
type CredentialRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	ProxyID        string `json:"proxyID"`
}

// Credential is an issued bootstrap credential.
type Credential struct {
	Token    string `json:"token"`
	SPIFFEID string `json:"spiffeID"`
	ProxyID  string `json:"proxyID"`
}

func registerCredentials(mux *http.ServeMux, b Backend) {
	cb, ok := b.(CredentialBackend)
	if !ok {
		return
	}
	mux.HandleFunc("POST /api/ca/credentials", func(w http.ResponseWriter, r *http.Request) {
		var req CredentialRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		cred, err := cb.IssueCredential(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, cred)
	})
}

// IssueCredential asks the backend for a proxy's bootstrap credential.
func (c *Client) IssueCredential(ctx context.Context, r CredentialRequest) (Credential, error) {
	var cred Credential
	body, _ := json.Marshal(r)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/api/ca/credentials", bytes.NewReader(body))
	if err != nil {
		return cred, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return cred, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return cred, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return cred, json.NewDecoder(resp.Body).Decode(&cred)
}
