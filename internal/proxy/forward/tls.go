package forward

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/tlsconf"
)

// tlsClientKey carries the endpoint's *tlsconf.Client to the transport's TLS dialer.
const tlsClientKey ctxKey = 100

// tlsTransports are the HTTP transports for TLS upstreams, one per TLS settings key
// and HTTP version, created on first use and kept across config swaps so warm
// connections survive them. The dialer reads the current *tlsconf.Client from the
// request context: a new trust bundle applies to new connections at once.
type tlsTransports struct {
	mu sync.Mutex
	m  sync.Map // string -> *http.Transport
}

func (t *tlsTransports) get(key string, http2 bool) *http.Transport {
	k := "h1|" + key
	if http2 {
		k = "h2|" + key
	}
	if tr, ok := t.m.Load(k); ok {
		return tr.(*http.Transport)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.m.Load(k); ok {
		return tr.(*http.Transport)
	}
	tr := &http.Transport{
		DialTLSContext:      dialTLS,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	tr.Protocols = new(http.Protocols)
	if http2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.m.Store(k, tr)
	return tr
}

func (t *tlsTransports) closeIdle() {
	t.m.Range(func(_, v any) bool {
		v.(*http.Transport).CloseIdleConnections()
		return true
	})
}

// dialTLS connects and runs the TLS handshake of the endpoint's transport socket. A
// failed handshake is a connect failure (Envoy: "transport failure reason: TLS
// error"): nothing was sent, so the request may be retried on another endpoint.
func dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c, _ := ctx.Value(tlsClientKey).(*tlsconf.Client)
	if c == nil {
		return nil, &ConnectError{Address: addr, Err: fmt.Errorf("no TLS settings for %s", addr)}
	}
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc, err := c.Handshake(ctx, conn)
	if err != nil {
		return nil, &ConnectError{Address: addr, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	return tc, nil
}

// xfccHeader is the header Envoy and Istio use to pass the caller's certificate on.
const xfccHeader = "X-Forwarded-Client-Cert"

// applyXFCC edits x-forwarded-client-cert as Envoy's forward_client_cert_details says.
// Only a TLS connection with a client certificate counts as mTLS; on any other
// connection the header is removed unless the mode is ALWAYS_FORWARD_ONLY.
func applyXFCC(r *http.Request, l *Chain) {
	info, _ := peer.FromContext(r.Context())
	mtls := info != nil && info.TLS && info.Certificate != nil
	switch {
	case l.XFCC == resource.XFCCAlwaysForwardOnly:
	case !mtls || l.XFCC == resource.XFCCSanitize:
		r.Header.Del(xfccHeader)
	case l.XFCC == resource.XFCCForwardOnly:
	case l.XFCC == resource.XFCCAppendForward:
		el := xfccElement(info, l.XFCCDetails)
		if prev := r.Header.Values(xfccHeader); len(prev) > 0 {
			el = strings.Join(prev, ",") + "," + el
		}
		r.Header.Set(xfccHeader, el)
	case l.XFCC == resource.XFCCSanitizeSet:
		r.Header.Set(xfccHeader, xfccElement(info, l.XFCCDetails))
	}
}

// xfccElement is the current connection's element, formatted once per connection
// and set of details (a SHA-256 of the certificate per request was 2% of a server
// sidecar's CPU).
func xfccElement(info *peer.Info, d resource.ClientCertDetails) string {
	var key uint64
	for i, b := range []bool{d.Cert, d.Chain, d.Subject, d.URI, d.DNS} {
		if b {
			key |= 1 << i
		}
	}
	return info.Memo(key, func() string { return formatXFCC(info, d) })
}

// formatXFCC formats the connection's element in Envoy's order:
// By, Hash, Cert, Chain, Subject, URI, DNS.
func formatXFCC(info *peer.Info, d resource.ClientCertDetails) string {
	var parts []string
	if !info.LocalID.IsZero() {
		parts = append(parts, "By="+info.LocalID.String())
	}
	sum := sha256.Sum256(info.Certificate.Raw)
	parts = append(parts, "Hash="+hex.EncodeToString(sum[:]))
	if d.Cert {
		parts = append(parts, `Cert="`+url.QueryEscape(string(pemOf(info.Certificate)))+`"`)
	}
	if d.Chain {
		var chain []byte
		for _, c := range info.Chain {
			chain = append(chain, pemOf(c)...)
		}
		parts = append(parts, `Chain="`+url.QueryEscape(string(chain))+`"`)
	}
	if d.Subject {
		parts = append(parts, `Subject="`+strings.ReplaceAll(info.Certificate.Subject.String(), `"`, `\"`)+`"`)
	}
	if d.URI {
		for _, u := range info.Certificate.URIs {
			parts = append(parts, "URI="+u.String())
		}
	}
	if d.DNS {
		for _, n := range info.Certificate.DNSNames {
			parts = append(parts, "DNS="+n)
		}
	}
	return strings.Join(parts, ";")
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
