// Package filter defines the proxy's filter chains: network filters that run when a
// connection is accepted (before tcp_proxy or the HTTP codec) and HTTP filters that run
// on each request before the router, as Envoy's filter chains do. Each filter is
// compiled once per accepted xDS snapshot into an immutable value (rbac/, jwtauthn/);
// per-request state lives in Request.
package filter

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"skein.dev/skein/internal/proxy/peer"
)

// Conn is what a filter knows about a downstream connection.
type Conn struct {
	Source      netip.AddrPort // the peer address (Istio's source.ip)
	Destination netip.AddrPort // the local address the connection arrived on
	SNI         string
	// Authenticated: the peer presented a certificate that was verified (mTLS).
	// Principal is its URI SAN, e.g. spiffe://cluster.local/ns/default/sa/sleep.
	Authenticated bool
	Principal     string
	// Metadata is the connection's dynamic metadata, written by network filters
	// (nil until one writes).
	Metadata Metadata
}

// ConnOf describes an accepted connection. The listener attaches a *peer.Info to ctx
// (the verified mTLS identity when TLS was terminated); a *tls.Conn's own state is
// read when there is none.
func ConnOf(ctx context.Context, c net.Conn) Conn {
	out := Conn{Source: addrPort(c.RemoteAddr()), Destination: addrPort(c.LocalAddr())}
	if info, ok := peer.FromContext(ctx); ok && info.TLS {
		fromPeer(info, &out)
		return out
	}
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := tc.ConnectionState()
		fromTLS(&cs, &out)
	}
	return out
}

// ConnOfRequest describes the connection an HTTP request came on.
func ConnOfRequest(r *http.Request) Conn {
	out := Conn{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		out.Source = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		out.Destination = addrPort(la)
	}
	if info, ok := peer.FromContext(r.Context()); ok && info.TLS {
		fromPeer(info, &out)
		return out
	}
	if r.TLS != nil {
		fromTLS(r.TLS, &out)
	}
	return out
}

// fromPeer reads the identity the listener verified: Envoy's "authenticated" is a TLS
// connection with a validated peer certificate; its principal the URI SAN.
func fromPeer(info *peer.Info, out *Conn) {
	out.SNI = info.ServerName
	switch {
	case !info.ID.IsZero():
		out.Authenticated, out.Principal = true, info.ID.String()
	case info.Certificate != nil:
		out.Authenticated = true
		if len(info.Certificate.URIs) > 0 {
			out.Principal = info.Certificate.URIs[0].String()
		}
	}
}

// fromTLS reads a TLS connection state: the verified leaf's spiffe:// URI SAN (else its
// first URI SAN).
func fromTLS(cs *tls.ConnectionState, out *Conn) {
	out.SNI = cs.ServerName
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return
	}
	out.Authenticated = true
	leaf := cs.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			out.Principal = u.String()
			return
		}
	}
	if len(leaf.URIs) > 0 {
		out.Principal = leaf.URIs[0].String()
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Metadata is Envoy's dynamic metadata of one request: values by filter name, then by
// key. Values are JSON-like (string, float64, bool, nil, []any, map[string]any).
type Metadata map[string]map[string]any

// Request is one HTTP request going through the filter chain.
type Request struct {
	HTTP     *http.Request
	Conn     Conn
	Listener string
	Metadata Metadata
	// XFFTrustedHops is the HCM's xff_num_trusted_hops (0: the last address).
	XFFTrustedHops int
}

// RemoteIP is Envoy's "original client address" of a request (Istio's remote.ip): with
// use_remote_address false (what skein's sidecars use, as Istio's do), the address in
// x-forwarded-for that is XFFTrustedHops from the right, else the peer address.
func (r *Request) RemoteIP() netip.Addr {
	vals := r.HTTP.Header.Values("X-Forwarded-For")
	var hops []string
	for _, v := range vals {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	if i := len(hops) - 1 - r.XFFTrustedHops; i >= 0 && i < len(hops) {
		if a, err := netip.ParseAddr(hops[i]); err == nil {
			return a.Unmap()
		}
	}
	return r.Conn.Source.Addr()
}

// Set records a metadata value for a filter.
func (m Metadata) Set(filter, key string, v any) {
	if m[filter] == nil {
		m[filter] = map[string]any{}
	}
	m[filter][key] = v
}

// LocalReply is an answer a filter sends instead of forwarding the request.
type LocalReply struct {
	Status int
	Body   string
	// GRPCStatus is the gRPC status code gRPC callers get (Envoy maps 403 to
	// PERMISSION_DENIED and 401 to UNAUTHENTICATED).
	GRPCStatus int
	Header     http.Header
	// Details is Envoy's response code details of the reply, for the access log.
	Details string
}

// HTTP is a compiled HTTP filter. DecodeHTTP may change the request's headers and
// metadata; a non-nil reply ends the request with it.
type HTTP interface {
	DecodeHTTP(r *Request) *LocalReply
}

// Network is a compiled network filter; false closes the connection.
type Network interface {
	OnConnection(c *Conn) bool
}
