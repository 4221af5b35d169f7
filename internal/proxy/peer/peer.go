// Package peer carries what the proxy knows about the other end of a downstream
// connection — above all the SPIFFE ID verified during the mTLS handshake — from the
// listener to the filters that need it (authorization's source.principal,
// x-forwarded-client-cert). The listener attaches an *Info to the context of every
// HTTP request and TCP connection it accepts; filters read it with FromContext.
package peer

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Info describes a downstream connection. It is immutable once attached (but for
// its memo of derived values).
type Info struct {
	// TLS is true when the proxy terminated TLS on the connection.
	TLS bool
	// ID is the peer's SPIFFE ID, verified against the trust bundle; zero when the
	// peer sent no (SPIFFE) certificate or the connection is plaintext.
	ID spiffeid.ID
	// Certificate is the peer's leaf certificate, nil without one.
	Certificate *x509.Certificate
	// Chain is the peer's certificate chain as sent, leaf first.
	Chain []*x509.Certificate
	// ServerName is the SNI the peer asked for (connection.requested_server_name).
	ServerName string
	// NegotiatedProtocol is the ALPN protocol, if any.
	NegotiatedProtocol string
	// LocalID is the SPIFFE ID of the certificate the proxy presented (XFCC "By").
	LocalID spiffeid.ID
	// RemoteAddr is the peer's address (host:port).
	RemoteAddr string

	// memo holds strings derived from the fields above (Memo).
	memoMu sync.Mutex
	memo   map[uint64]string
}

// Memo returns compute's result for key, computed once per connection: values derived
// from the peer's certificate (the x-forwarded-client-cert element, with its SHA-256)
// are the same for every request on the connection.
func (i *Info) Memo(key uint64, compute func() string) string {
	i.memoMu.Lock()
	defer i.memoMu.Unlock()
	if v, ok := i.memo[key]; ok {
		return v
	}
	v := compute()
	if i.memo == nil {
		i.memo = map[uint64]string{}
	}
	i.memo[key] = v
	return v
}

// Principal returns the peer identity in Istio's principal form, the SPIFFE ID
// without its scheme ("cluster.local/ns/default/sa/sleep"), or "" when unknown. This is
// what AuthorizationPolicy source.principals match.
func (i *Info) Principal() string {
	if i == nil || i.ID.IsZero() {
		return ""
	}
	return strings.TrimPrefix(i.ID.String(), "spiffe://")
}

// Namespace returns the namespace of a workload SPIFFE ID (/ns/<ns>/sa/<sa>), or "".
// This is Istio's source.namespace.
func (i *Info) Namespace() string {
	if i == nil || i.ID.IsZero() {
		return ""
	}
	segs := strings.Split(strings.TrimPrefix(i.ID.Path(), "/"), "/")
	if len(segs) == 4 && segs[0] == "ns" && segs[2] == "sa" {
		return segs[1]
	}
	return ""
}

type key struct{}

// NewContext returns ctx carrying info.
func NewContext(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// FromContext returns the connection's Info, or nil and false when ctx has none (the
// listener does not attach one on plaintext listeners without TLS inspection).
func FromContext(ctx context.Context) (*Info, bool) {
	i, ok := ctx.Value(key{}).(*Info)
	return i, ok && i != nil
}
