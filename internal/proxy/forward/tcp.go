package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/inspect"
	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/tlsconf"
	"skein.dev/skein/internal/proxy/upstream"
)

// ServeTCP proxies one accepted connection for the named tcp_proxy filter chain and
// closes it.
func (f *Forwarder) ServeTCP(ctx context.Context, conn net.Conn, listener, chain string) {
	defer conn.Close()
	cfg := f.cfg.Load()
	if cfg == nil {
		return
	}
	l := cfg.Listeners[listener]
	if l == nil {
		return
	}
	ch := l.Chain(chain)
	if ch == nil || ch.TCP == nil {
		return
	}
	info := streaminfo.New(listener, l.Direction, streaminfo.ProtocolTCP)
	info.DownstreamAddress = conn.RemoteAddr().String()
	tel := f.tel
	if l.Direction == streaminfo.Inbound {
		info.UpstreamPeer = tel.Local
		var state *tls.ConnectionState
		if cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
			st := cs.ConnectionState()
			state = &st
		}
		info.Security, info.DownstreamPrincipal = downstreamSecurity(ctx, state)
		if pi, ok := peer.FromContext(ctx); ok && pi.NegotiatedProtocol == tlsconf.PeerExchangeALPN {
			// A skein sidecar offered the in-band metadata exchange (exchange.go).
			c, md, err := exchangeAsServer(conn, tel.LocalHeader)
			if err != nil {
				f.log.Debug("tcp: peer metadata exchange failed", "listener", listener, "error", err)
				return
			}
			conn = c
			info.DownstreamPeer = tel.Peers.Decode(md)
		}
		if info.DownstreamPeer == nil {
			// No metadata: the caller's verified SPIFFE ID still names its namespace.
			info.DownstreamPeer = tel.Peers.FromPrincipal(info.DownstreamPrincipal)
		}
	} else {
		info.DownstreamPeer = tel.Local
	}
	info.Cluster = ch.TCP.PickCluster()
	if l.Direction == streaminfo.Outbound {
		info.Service = tel.Services.ForCluster(info.Cluster)
	}
	// An outbound connection is counted as opened once the upstream's identity is
	// known (after the mTLS handshake), so opened and closed carry the same labels.
	opened := false
	open := func() {
		if !opened {
			opened = true
			tel.OpenTCP(info)
		}
	}
	if l.Direction == streaminfo.Inbound {
		open()
	}
	defer func() {
		open()
		info.Duration = time.Since(info.Start)
		tel.CloseTCP(info)
	}()
	if !allowConnection(ctx, ch, conn, info) {
		return // denied by a network filter (RBAC): the connection is closed
	}
	c := cfg.Clusters[info.Cluster]
	if c == nil {
		info.Flags |= streaminfo.NoClusterFound
		f.log.Debug("tcp: unknown cluster", "listener", listener, "cluster", info.Cluster)
		return
	}
	var (
		up  net.Conn
		ep  *upstream.Endpoint
		err error
	)
	if c.OriginalDst {
		var dst string
		if dst, err = originalDestination(downstreamConn(ctx, conn)); err == nil {
			info.UpstreamHost = dst
			ctx = context.WithValue(ctx, bindKey, c.BindAddress)
			up, err = dial(context.WithValue(ctx, connectTimeoutKey, c.ConnectTimeout), "tcp", dst)
		}
	} else {
		// max_connections bounds the cluster's TCP connections (UO when full).
		release, aerr := c.AdmitConnection()
		if aerr != nil {
			info.Flags |= streaminfo.UpstreamOverflow
			f.log.Debug("tcp: upstream overflow", "listener", listener, "cluster", info.Cluster)
			return
		}
		defer release()
		up, ep, err = dialEndpoint(ctx, c)
	}
	if err != nil {
		if errors.Is(err, ErrNoHealthyUpstream) {
			info.Flags |= streaminfo.NoHealthyUpstream
		} else {
			info.Flags |= streaminfo.UpstreamConnectionFailure
		}
		f.log.Debug("tcp: upstream connect failed", "listener", listener, "cluster", info.Cluster, "error", err)
		return
	}
	defer up.Close()
	if tc, ok := up.(interface{ ConnectionState() tls.ConnectionState }); ok && l.Direction == streaminfo.Outbound {
		cs := tc.ConnectionState()
		_, info.UpstreamPrincipal = securityOf(&cs)
		if cs.NegotiatedProtocol == tlsconf.PeerExchangeALPN {
			md, err := exchangeAsClient(up, tel.LocalHeader, exchangeTimeout)
			if err != nil {
				info.Flags |= streaminfo.UpstreamConnectionFailure
				f.log.Debug("tcp: peer metadata exchange failed", "listener", listener, "cluster", info.Cluster, "error", err)
				return
			}
			info.UpstreamPeer = tel.Peers.Decode(md)
		}
		if info.UpstreamPeer == nil && info.UpstreamPrincipal != "" {
			info.UpstreamPeer = tel.Peers.FromPrincipal(info.UpstreamPrincipal)
		}
	}
	open()
	if ep != nil {
		info.UpstreamHost = ep.Address
		done := ep.Begin()
		defer done()
	}
	sent, received := splice(ctx, conn, up)
	info.BytesReceived, info.BytesSent = sent, received
}

// ErrNotRedirected refuses to pass a connection to its original destination when it
// was not redirected: that destination is this very listener, and the proxy would
// connect to itself again and again.
var ErrNotRedirected = errors.New("connection was not redirected: its original destination is this proxy")

// downstreamConn is the accepted connection as the listener filters saw it (with its
// restored destination), also when TLS was terminated on top of it.
func downstreamConn(ctx context.Context, conn net.Conn) *inspect.Conn {
	if c := inspect.ConnFromContext(ctx); c != nil {
		return c
	}
	return inspect.Wrap(conn)
}

// originalDestination is where an ORIGINAL_DST cluster sends a downstream connection.
func originalDestination(c *inspect.Conn) (string, error) {
	if c == nil {
		return "", ErrNoHealthyUpstream
	}
	if !c.Redirected {
		return "", ErrNotRedirected
	}
	return c.Dst().String(), nil
}

func dialEndpoint(ctx context.Context, c *upstream.Cluster) (net.Conn, *upstream.Endpoint, error) {
	ctx = context.WithValue(ctx, connectTimeoutKey, c.ConnectTimeout)
	var failed *upstream.Endpoint
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		ep := c.Pick(failed)
		if ep == nil || ep == failed {
			break
		}
		start := time.Now()
		conn, err := dial(ctx, "tcp", ep.Address)
		if err == nil && ep.TLS != nil {
			var tc net.Conn
			if tc, err = ep.TLS.Handshake(ctx, conn); err == nil {
				conn = tc
			} else {
				err = &ConnectError{Address: ep.Address, Err: fmt.Errorf("TLS handshake: %w", err)}
			}
		}
		if err == nil {
			c.ObserveConnectSuccess(ep)
			return conn, ep, nil
		}
		c.ObserveLocalFailure(ep, time.Since(start))
		failed, lastErr = ep, err
	}
	if lastErr == nil {
		lastErr = ErrNoHealthyUpstream
	}
	return nil, nil, lastErr
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways. When one side finishes sending, its peer's write side is
// closed (half-close), and the other direction keeps flowing until it ends too.
func splice(ctx context.Context, down, up net.Conn) (sent, received int64) {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		down.Close()
		up.Close()
	})
	defer stop()
	copyHalf := func(dst, src net.Conn, n *int64) {
		defer wg.Done()
		*n, _ = io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go copyHalf(up, down, &sent)
	go copyHalf(down, up, &received)
	wg.Wait()
	return sent, received
}
