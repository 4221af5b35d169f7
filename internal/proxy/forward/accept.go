package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
)

// Errors of Prepare, each closing the connection.
var (
	ErrNoFilterChain = errors.New("no filter chain matches the connection")
	ErrNoListener    = errors.New("listener not in the current config")
)

// InspectTimeout bounds the wait for a client's first byte on a listener with the TLS
// inspector. A client silent that long is taken as plaintext (raw_buffer), so
// server-first protocols work where plaintext is accepted.
const InspectTimeout = 5 * time.Second

// tlsRecordHandshake is the first byte of every TLS ClientHello record.
const tlsRecordHandshake = 0x16

// Prepare readies a connection of a secure listener with the current config, as
// Envoy's listener does: the TLS inspector tells "tls" from "raw_buffer" by the first
// byte, the filter chain is chosen on that, and the chain's TLS context (if any)
// terminates TLS. The returned connection is what the listener's filters serve.
func (f *Forwarder) Prepare(ctx context.Context, listener string, conn net.Conn) (net.Conn, *peer.Info, error) {
	cfg := f.cfg.Load()
	var l *Listener
	if cfg != nil {
		l = cfg.Listeners[listener]
	}
	if l == nil {
		conn.Close()
		return nil, nil, ErrNoListener
	}
	transport := resource.TransportRawBuffer
	var c net.Conn = conn
	if l.TLSInspector {
		pc := &peekConn{Conn: conn, r: bufio.NewReaderSize(conn, 1024)}
		_ = conn.SetReadDeadline(time.Now().Add(InspectTimeout))
		first, err := pc.r.Peek(1)
		_ = conn.SetReadDeadline(time.Time{})
		switch {
		case err == nil && first[0] == tlsRecordHandshake:
			transport = resource.TransportTLS
		case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
			conn.Close()
			return nil, nil, fmt.Errorf("inspecting: %w", err)
		}
		c = pc
	}
	chain := l.SelectChain(transport)
	if chain == nil {
		f.metrics.ConnectionRefused(listener, "no_filter_chain")
		conn.Close()
		return nil, nil, fmt.Errorf("%w (transport %s)", ErrNoFilterChain, transport)
	}
	if chain.Err != nil {
		f.metrics.ConnectionRefused(listener, "tls_config")
		conn.Close()
		return nil, nil, chain.Err
	}
	if chain.TLS == nil {
		return c, &peer.Info{RemoteAddr: conn.RemoteAddr().String()}, nil
	}
	tc, info, err := chain.TLS.Handshake(ctx, c)
	if err != nil {
		f.metrics.ConnectionRefused(listener, "tls_handshake")
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, info, nil
}

// peekConn replays the bytes the inspector read before the rest of the stream.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying TCP connection (tcp_proxy half-close).
func (c *peekConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
