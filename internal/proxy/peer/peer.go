// Package peer tells the proxy who is on the other end of a downstream connection: the
// SPIFFE ID of a verified mTLS peer. It reads it from the TLS connection state (the
// verified leaf certificate's URI SAN), or from a context value set by whatever
// terminates TLS before the proxy's handlers run. Authorization (source.principal,
// source.namespace) reads it through here only, so the TLS work and the policy work
// meet in one small place.
package peer

import (
	"context"
	"crypto/tls"
)

type ctxKey struct{}

// NewContext returns ctx carrying the verified peer principal (a URI such as
// spiffe://cluster.local/ns/default/sa/sleep).
func NewContext(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, ctxKey{}, principal)
}

// FromContext returns the principal NewContext stored.
func FromContext(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(ctxKey{}).(string)
	return p, ok && p != ""
}

// FromTLS returns the URI SAN of the peer's verified leaf certificate (the first
// spiffe:// one, else the first URI). ok is false without a verified peer certificate:
// a plaintext or one-way TLS connection has no peer identity.
func FromTLS(cs *tls.ConnectionState) (principal string, ok bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := cs.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			return u.String(), true
		}
	}
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String(), true
	}
	return "", true // verified, but without a URI SAN
}
