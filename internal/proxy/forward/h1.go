package forward

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"skein.dev/skein/internal/proxy/h1client"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/upstream"
)

// This file sends HTTP/1.1 upstream requests through h1client, whose requests read and
// write their own connection (no http.Transport goroutine hand-off per request). It
// takes plaintext and TLS HTTP/1.1 endpoints; HTTP/2, upgrades, CONNECT and
// Expect: 100-continue stay on http.Transport.

// useH1Client reports whether an attempt goes through the h1client pool.
func useH1Client(req *http.Request, ep *upstream.Endpoint, http2 bool) bool {
	if http2 || !h1client.Supports(req) {
		return false
	}
	// A TLS endpoint that may negotiate h2 needs the transport that speaks it.
	return ep.TLS == nil || !slices.Contains(ep.TLS.Config().NextProtos, "h2")
}

// h1Target describes the attempt's endpoint and the cluster's connection options.
func h1Target(c *upstream.Cluster, ep *upstream.Endpoint) h1client.Target {
	t := h1client.Target{
		Key:            h1client.Key{Addr: ep.Address, Bind: c.BindAddress},
		IdleTimeout:    c.Policy.IdleTimeout,
		MaxRequests:    c.Policy.MaxRequestsPerConnection,
		ConnectTimeout: c.ConnectTimeout,
	}
	if ka := c.Policy.KeepAlive; ka != nil {
		t.Key.KeepAlive = keepAliveConfig(ka.Time, ka.Interval, int(ka.Probes))
	}
	if ep.TLS != nil {
		t.Key.TLS = ep.TLS.Key
		t.Data = ep.TLS
	}
	return t
}

// dialH1 connects an h1client target: TCP with the cluster's connect timeout, source
// address and keepalive, then the TLS handshake for TLS endpoints. Failures are
// ConnectErrors (nothing was sent: retryable elsewhere).
func dialH1(ctx context.Context, t *h1client.Target) (net.Conn, error) {
	var ka *net.KeepAliveConfig
	if t.Key.KeepAlive.Enable {
		ka = &t.Key.KeepAlive
	}
	conn, err := dialTCP(ctx, t.Key.Addr, t.ConnectTimeout, t.Key.Bind, ka)
	if err != nil {
		return nil, err
	}
	tc, _ := t.Data.(*tlsconf.Client)
	if tc == nil {
		return conn, nil
	}
	tconn, err := tc.Handshake(ctx, conn)
	if err != nil {
		return nil, &ConnectError{Address: t.Key.Addr, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	return tconn, nil
}

// dialTCP connects to addr. A zero timeout is 5 s; nil keepalive keeps Go's default.
func dialTCP(ctx context.Context, addr string, timeout time.Duration, bind string, ka *net.KeepAliveConfig) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if timeout > 0 {
		d.Timeout = timeout
	}
	if bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(bind)}
	}
	if ka != nil {
		d.KeepAliveConfig = *ka
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnectError{Address: addr, Err: err}
	}
	return conn, nil
}

// keepAliveConfig is the socket keepalive of a cluster's upstream_connection_options
// (a zero time: the system default).
func keepAliveConfig(idle, interval time.Duration, probes int) net.KeepAliveConfig {
	kc := net.KeepAliveConfig{Enable: true, Idle: idle, Interval: interval, Count: probes}
	if idle == 0 {
		kc.Idle = -1
	}
	return kc
}
