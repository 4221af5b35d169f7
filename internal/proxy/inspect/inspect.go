// Package inspect implements the proxy's inspecting listener filters: original_dst
// (restore a redirected connection's destination with SO_ORIGINAL_DST), tls_inspector
// (TLS ClientHello: SNI and ALPN) and http_inspector (HTTP/1.x request line or the
// HTTP/2 preface). The inspectors peek: the bytes they read are replayed to whoever
// handles the connection next. They wait for the client's first bytes for at most a
// timeout, so protocols where the server speaks first are not stalled for long.
package inspect

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"skein.dev/skein/internal/capture"
)

// Conn is an accepted connection after the listener filters: it replays the bytes the
// inspectors read, and reports the restored original destination as its local address
// (as Envoy's original_dst filter does), which ORIGINAL_DST clusters dial.
type Conn struct {
	net.Conn
	peeked []byte
	local  net.Addr
	// Redirected is true when the connection reached this socket through a REDIRECT
	// rule (its original destination was elsewhere).
	Redirected bool
}

// Wrap returns c as a *Conn (itself when it already is one).
func Wrap(c net.Conn) *Conn {
	if w, ok := c.(*Conn); ok {
		return w
	}
	return &Conn{Conn: c}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// LocalAddr is the original destination when it was restored.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// CloseWrite half-closes the underlying connection when it supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Dst returns the (restored) destination address.
func (c *Conn) Dst() netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// RestoreOriginalDst is the original_dst listener filter.
func RestoreOriginalDst(c *Conn) error {
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	dst, redirected, err := capture.OriginalDst(tc)
	if err != nil {
		return err
	}
	c.local = net.TCPAddrFromAddrPort(dst)
	c.Redirected = redirected
	return nil
}

// Options say which inspectors run and how long they wait.
type Options struct {
	TLS, HTTP bool
	// Timeout bounds the wait for bytes; 0 means no limit.
	Timeout time.Duration
}

// Result is what the inspectors found.
type Result struct {
	// TransportProtocol is "tls" when a ClientHello was seen, else "raw_buffer".
	TransportProtocol string
	ServerName        string
	// ApplicationProtocols: the ClientHello's ALPN, or the detected plaintext HTTP
	// ("http/1.1", "http/1.0", "h2c").
	ApplicationProtocols []string
	// TimedOut: the client sent too little before the timeout.
	TimedOut bool
}

// maxPeek bounds how much the inspectors read.
const maxPeek = maxHandshake + 5*8

// ErrTimeout is returned by Inspect when the timeout passed before the inspectors
// decided; the Result holds what is known (nothing detected).
var ErrTimeout = errors.New("listener filters timed out")

// Inspect runs the enabled inspectors on c, reading until each has decided, the client
// stops sending (EOF) or the timeout passes (ErrTimeout). The bytes read are replayed.
func Inspect(c *Conn, o Options) (Result, error) {
	res := Result{TransportProtocol: "raw_buffer"}
	if !o.TLS && !o.HTTP {
		return res, nil
	}
	if o.Timeout > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(o.Timeout)); err != nil {
			return res, err
		}
		defer c.Conn.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, 0, 1024)
	tlsDone, httpDone := !o.TLS, !o.HTTP
	for {
		if !tlsDone {
			switch v, hello := parseTLS(buf); v {
			case yes:
				res.TransportProtocol, res.ServerName, res.ApplicationProtocols = "tls", hello.ServerName, hello.ALPN
				c.peeked = append(c.peeked, buf...)
				return res, nil // HTTP inspection does not look inside TLS
			case no:
				tlsDone = true
			}
		}
		if !httpDone {
			switch v, proto := parseHTTP(buf); v {
			case yes:
				res.ApplicationProtocols = []string{proto}
				httpDone = true
			case no:
				httpDone = true
			}
		}
		if tlsDone && httpDone || len(buf) >= maxPeek {
			c.peeked = append(c.peeked, buf...)
			return res, nil
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.peeked = append(c.peeked, buf...)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				res.TimedOut = true
				return res, ErrTimeout
			}
			if errors.Is(err, io.EOF) {
				return res, nil // the client sent all it will: undetected
			}
			return res, err
		}
	}
}

type ctxKey struct{}

// ContextWithConn records the downstream connection in an HTTP request's context (the
// listener does it with http.Server.ConnContext), for ORIGINAL_DST clusters.
func ContextWithConn(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// ConnFromContext returns the downstream connection recorded by ContextWithConn.
func ConnFromContext(ctx context.Context) *Conn {
	c, _ := ctx.Value(ctxKey{}).(*Conn)
	return c
}
