package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// CABackend is what a mesh with a certificate authority exposes: its roots and the
// root rotation steps. Backends without a CA do not implement it.
type CABackend interface {
	CAStatus() CAStatus
	// RotateRoot prepares a new root, pushes the bundle with both roots to every proxy
	// and Workload API client, waits until every proxy acknowledged it, then makes the
	// new root sign. ctx bounds the wait.
	RotateRoot(ctx context.Context) (CAStatus, error)
	// DropPreviousRoots ends the overlap. Without force it refuses while certificates
	// signed by a previous root may still be valid (ErrRootsInUse).
	DropPreviousRoots(force bool) (CAStatus, error)
}

// ErrRootsInUse: previous roots still back unexpired certificates.
var ErrRootsInUse = errors.New("previous roots still back valid certificates")

// CAStatus is the answer of GET /api/ca and of the rotation endpoints.
type CAStatus struct {
	TrustDomain string `json:"trustDomain"`
	// Plugin: an external intermediate from Istio's plug-in files signs (no rotation).
	Plugin bool `json:"plugin"`
	// Roots are the trusted roots, the signing one first.
	Roots []CARoot `json:"roots"`
	// PreviousRootsValidUntil: certificates signed by previous roots may be valid until
	// then; dropping them earlier breaks those certificates.
	PreviousRootsValidUntil time.Time `json:"previousRootsValidUntil,omitzero"`
	WorkloadTTL             string    `json:"workloadTTL"`
}

// CARoot describes one trusted root.
type CARoot struct {
	Serial   string    `json:"serial"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
	// Role is signing, prepared (trusted, not signing yet) or previous.
	Role string `json:"role"`
}

func registerCA(mux *http.ServeMux, b Backend) {
	cb, ok := b.(CABackend)
	if !ok {
		return
	}
	mux.HandleFunc("GET /api/ca", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cb.CAStatus())
	})
	mux.HandleFunc("POST /api/ca/rotate-root", func(w http.ResponseWriter, r *http.Request) {
		st, err := cb.RotateRoot(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /api/ca/drop-previous-roots", func(w http.ResponseWriter, r *http.Request) {
		st, err := cb.DropPreviousRoots(r.URL.Query().Get("force") == "true")
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// CAStatus fetches the CA's roots.
func (c *Client) CAStatus(ctx context.Context) (CAStatus, error) {
	var s CAStatus
	err := c.get(ctx, "/api/ca", &s)
	return s, err
}

// RotateRoot runs a root rotation with overlap (it may take a while: every proxy must
// acknowledge the new bundle first).
func (c *Client) RotateRoot(ctx context.Context) (CAStatus, error) {
	return c.postCA(ctx, "/api/ca/rotate-root")
}

// DropPreviousRoots ends the overlap of a root rotation.
func (c *Client) DropPreviousRoots(ctx context.Context, force bool) (CAStatus, error) {
	path := "/api/ca/drop-previous-roots"
	if force {
		path += "?force=true"
	}
	return c.postCA(ctx, path)
}

func (c *Client) postCA(ctx context.Context, path string) (CAStatus, error) {
	var s CAStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+path, nil)
	if err != nil {
		return s, err
	}
	hc := *c.HTTP
	hc.Timeout = 0 // ctx bounds it: a rotation waits for every proxy
	resp, err := hc.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return s, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}
