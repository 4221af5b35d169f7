package forward

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/upstream"
)

// This file is the request path's side of the cluster layer (internal/proxy/upstream):
// the request hash, circuit-breaker admission, outcome reports for outlier detection
// and peak EWMA, and per-cluster connection pool options.

const (
	keepaliveKey ctxKey = iota + 200
	maxUsesKey
)

// prepareUpstream computes, once per request, what every attempt's pick uses: the hash
// of a consistent-hash cluster, and the cookie to set when the hash policy made one.
func prepareUpstream(st *reqState, c *upstream.Cluster, rt *route.Route, r *http.Request) {
	if !c.HashBased() || len(rt.HashPolicies) == 0 {
		return
	}
	st.pick.Hash, st.pick.HasHash, st.setCookie = upstream.RequestHash(rt.HashPolicies, r, time.Now())
}

// pickFor is the pick request of one attempt.
func (st *reqState) pickFor(exclude *upstream.Endpoint) upstream.Request {
	p := st.pick
	p.Exclude = exclude
	return p
}

// observeError reports a failed attempt to outlier detection, unless the caller went
// away (not the endpoint's fault).
func observeError(c *upstream.Cluster, ep *upstream.Endpoint, req *http.Request, err error, start time.Time) {
	if req.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	c.ObserveLocalFailure(ep, time.Since(start))
}

// overflowFlag marks circuit-breaker refusals (UO) and says so in the answer, as
// Envoy's x-envoy-overloaded header does.
func overflowFlag(w http.ResponseWriter, err error) (streaminfo.Flags, bool) {
	if !errors.Is(err, upstream.ErrOverflow) {
		return 0, false
	}
	w.Header().Set("X-Envoy-Overloaded", "true")
	return streaminfo.UpstreamOverflow, true
}

// poolContext carries the cluster's TCP keepalive and requests-per-connection limit
// to the dialer.
func poolContext(ctx context.Context, c *upstream.Cluster) context.Context {
	if ka := c.Policy.KeepAlive; ka != nil {
		ctx = context.WithValue(ctx, keepaliveKey, ka)
	}
	if n := c.Policy.MaxRequestsPerConnection; n > 0 {
		ctx = context.WithValue(ctx, maxUsesKey, n)
	}
	return ctx
}

// dialKeepAlive is the cluster's TCP keepalive from the context (nil: Go's default).
func dialKeepAlive(ctx context.Context) *net.KeepAliveConfig {
	if ka, ok := ctx.Value(keepaliveKey).(*resource.TCPKeepalive); ok {
		kc := keepAliveConfig(ka.Time, ka.Interval, int(ka.Probes))
		return &kc
	}
	return nil
}

// countConn wraps a dialed connection when the cluster limits requests per connection.
func countConn(ctx context.Context, conn net.Conn) net.Conn {
	if n, ok := ctx.Value(maxUsesKey).(uint32); ok && n > 0 {
		return &countedConn{Conn: conn, max: n}
	}
	return conn
}

// countedConn counts the HTTP/1.1 requests sent on one upstream connection.
type countedConn struct {
	net.Conn
	max  uint32
	uses atomic.Uint32
}

// pooled returns the transport to use for a cluster: base, or a copy of it with the
// cluster's idle timeout, wrapped to enforce max_requests_per_connection on HTTP/1.1.
func (f *Forwarder) pooled(c *upstream.Cluster, base http.RoundTripper, http2 bool) http.RoundTripper {
	rt := base
	if t, ok := base.(*http.Transport); ok && c.Policy.IdleTimeout > 0 {
		rt = f.idlePools.get(t, c.Policy.IdleTimeout)
	}
	if c.Policy.MaxRequestsPerConnection > 0 && !http2 {
		rt = limitUses{rt}
	}
	return rt
}

// idlePools holds transports cloned with another idle timeout, one per base transport
// and timeout, shared by every config.
type idlePools struct {
	mu sync.Mutex
	m  map[idleKey]*http.Transport
}

type idleKey struct {
	base *http.Transport
	idle time.Duration
}

func (p *idlePools) get(base *http.Transport, idle time.Duration) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := idleKey{base, idle}
	if t := p.m[k]; t != nil {
		return t
	}
	if p.m == nil {
		p.m = map[idleKey]*http.Transport{}
	}
	t := base.Clone()
	t.IdleConnTimeout = idle
	p.m[k] = t
	return t
}

func (p *idlePools) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.m {
		t.CloseIdleConnections()
	}
}

// limitUses marks the request that uses a connection for the last allowed time with
// Connection: close, so the transport retires the connection after its response. The
// mark is made when the transport hands the connection over, before it writes the
// request.
type limitUses struct{ rt http.RoundTripper }

func (l limitUses) RoundTrip(req *http.Request) (*http.Response, error) {
	var out *http.Request
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		conn := info.Conn
		if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
			conn = nc.NetConn() // TLS
		}
		if cc, ok := conn.(*countedConn); ok && cc.uses.Add(1) >= cc.max {
			out.Close = true
		}
	}}
	out = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	return l.rt.RoundTrip(out)
}
