package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"skein.dev/skein/internal/proxy/upstream"
)

// ServeTCP proxies one accepted connection for the named tcp_proxy listener and closes it.
func (f *Forwarder) ServeTCP(ctx context.Context, conn net.Conn, listener string) {
	defer conn.Close()
	cfg := f.cfg.Load()
	if cfg == nil {
		return
	}
	l := cfg.Listeners[listener]
	if l == nil || l.TCP == nil {
		return
	}
	if !allowConnection(ctx, l, conn) {
		return // denied by a network filter (RBAC): the connection is closed
	}
	clusterName := l.TCP.PickCluster()
	c := cfg.Clusters[clusterName]
	if c == nil {
		f.log.Debug("tcp: unknown cluster", "listener", listener, "cluster", clusterName)
		return
	}
	up, ep, err := dialEndpoint(ctx, c)
	if err != nil {
		f.log.Debug("tcp: upstream connect failed", "listener", listener, "cluster", clusterName, "error", err)
		return
	}
	defer up.Close()
	done := ep.Begin()
	defer done()
	f.metrics.TCPConnection(clusterName)
	sent, received := splice(ctx, conn, up)
	f.metrics.TCPBytes(clusterName, sent, received)
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
			return conn, ep, nil
		}
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
