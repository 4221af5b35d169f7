// Package h1client sends HTTP/1.1 requests over pooled upstream connections, reading
// and writing each connection from the goroutine of the request that holds it.
//
// http.Transport runs two goroutines per connection (writeLoop and readLoop) and hands
// every request and response between them and the caller over channels; in the
// sidecar's profile that hand-off and the scheduler work behind it were about a third
// of the proxy's CPU (docs/BENCHMARKS.md). Here a request takes an idle connection,
// writes its head (and a small body) in one write, reads the response on the same
// goroutine and puts the connection back when the response body reaches its end, as
// nginx and HAProxy do per event. Parsing is net/http's (http.ReadResponse).
//
// Request bodies of unknown or large size are written by a goroutine of their own
// while the response is read, so an upstream may answer before the body ends (a 413,
// a streaming echo) as it can with http.Transport.
//
// What it does not do, and callers keep http.Transport for: HTTP/2, protocol upgrades
// (101), CONNECT and Expect: 100-continue.
package h1client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// DefaultIdleTimeout is how long an idle connection is kept when the target gives no
// idle timeout (http.Transport's IdleConnTimeout in the proxy).
const DefaultIdleTimeout = 90 * time.Second

// maxIdlePerKey bounds the idle connections kept per key (the proxy's
// MaxIdleConnsPerHost).
const maxIdlePerKey = 64

// Key identifies interchangeable connections: same address, TLS settings, source
// address and socket options. Targets with equal keys share idle connections.
type Key struct {
	Addr string
	// TLS is the TLS settings' identity; "" is plaintext.
	TLS string
	// Bind is the source address ("" any).
	Bind      string
	KeepAlive net.KeepAliveConfig
}

// Target is where one request goes.
type Target struct {
	Key Key
	// IdleTimeout closes connections idle this long (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxRequests retires a connection after this many requests (0: no limit); the
	// last one is sent with Connection: close.
	MaxRequests uint32
	// ConnectTimeout bounds a dial (the pool's DialFunc applies it).
	ConnectTimeout time.Duration
	// Data is passed to the pool's Dial (the caller's TLS settings, say).
	Data any
	// Informational receives 1xx answers before the final one; when nil, the
	// request context's httptrace.ClientTrace Got1xxResponse does.
	Informational Informational
}

// Informational receives interim (1xx) responses.
type Informational interface {
	Got1xx(code int, header textproto.MIMEHeader) error
}

// DialFunc opens a connection for a target: TCP, or TLS with the handshake done. Its
// errors are returned as they are (the proxy's are connect failures).
type DialFunc func(ctx context.Context, t *Target) (net.Conn, error)

// Pool keeps idle connections per Key. The zero value is not usable; use New.
type Pool struct {
	dial DialFunc
	mu   sync.Mutex
	idle map[Key][]*conn
	// closed makes puts close their connection (after Close).
	closed bool
}

// New returns a pool that dials with dial.
func New(dial DialFunc) *Pool {
	return &Pool{dial: dial, idle: map[Key][]*conn{}}
}

// ErrUnsupported is returned for requests this client does not send; the caller uses
// http.Transport for them.
var ErrUnsupported = errors.New("h1client: request needs http.Transport")

// Supports reports whether RoundTrip handles req: not CONNECT, no protocol upgrade,
// no Expect: 100-continue.
func Supports(req *http.Request) bool {
	if req.Method == http.MethodConnect {
		return false
	}
	h := req.Header
	if len(h["Upgrade"]) > 0 {
		return false
	}
	return len(h["Expect"]) == 0
}

// CloseIdle closes the idle connections.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[Key][]*conn{}
	for _, cs := range idle {
		for _, c := range cs {
			c.idle = false
		}
	}
	p.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
}

// Close closes the idle connections and every connection put back later.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.CloseIdle()
}

// RoundTrip sends req to t and returns the response, whose body must be read to its
// end or closed. The request's context bounds the whole exchange, body included.
func (p *Pool) RoundTrip(req *http.Request, t *Target) (*http.Response, error) {
	if !Supports(req) {
		return nil, ErrUnsupported
	}
	if err := validate(req); err != nil {
		return nil, err
	}
	ctx := req.Context()
	c, err := p.get(ctx, t)
	if err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(req, t.Informational)
	if err == nil {
		return resp, nil
	}
	var se *staleError
	if !errors.As(err, &se) {
		return nil, err
	}
	// A reused connection the upstream had closed (it answered nothing): send again on
	// a new connection, as http.Transport does, when the body can be sent again.
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, se.err
		}
		body, gerr := req.GetBody()
		if gerr != nil {
			return nil, se.err
		}
		r2 := *req
		r2.Body = body
		req = &r2
	}
	c, err = p.dialConn(ctx, t)
	if err != nil {
		return nil, err
	}
	return c.roundTrip(req, t.Informational)
}

// get takes an idle connection of t's key that is still usable, or dials.
func (p *Pool) get(ctx context.Context, t *Target) (*conn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		cs := p.idle[t.Key]
		if len(cs) == 0 {
			p.mu.Unlock()
			return p.dialConn(ctx, t)
		}
		// Most recently used first: its peer is least likely to have closed it, and
		// the others age out.
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		p.idle[t.Key] = cs[:len(cs)-1]
		c.idle = false
		c.idleTimer.Stop()
		p.mu.Unlock()
		idleFor := now.Sub(c.idleSince)
		if idleFor >= c.idleTimeout || idleFor >= staleCheckAfter && !c.alive() {
			c.close()
			continue
		}
		c.reused = true
		return c, nil
	}
}

// staleCheckAfter: a connection idle this long is checked for a close from its peer
// (one non-blocking peek) before it is used. Busier connections are not checked; a
// request that finds one closed is sent again (RoundTrip).
const staleCheckAfter = 100 * time.Millisecond

func (p *Pool) dialConn(ctx context.Context, t *Target) (*conn, error) {
	nc, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	return newConn(p, nc, t), nil
}

// put makes c idle, or closes it when the pool is full or closed.
func (p *Pool) put(c *conn) {
	p.mu.Lock()
	cs := p.idle[c.key]
	if p.closed || len(cs) >= maxIdlePerKey {
		p.mu.Unlock()
		c.close()
		return
	}
	c.idle = true
	c.idleSince = time.Now()
	p.idle[c.key] = append(cs, c)
	c.idleTimer.Reset(c.idleTimeout)
	p.mu.Unlock()
}

// remove takes c out of the idle list; false if it was not idle (a request has it).
func (p *Pool) remove(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.idle {
		return false
	}
	cs := p.idle[c.key]
	for i, x := range cs {
		if x == c {
			copy(cs[i:], cs[i+1:])
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(p.idle, c.key)
	} else {
		p.idle[c.key] = cs
	}
	c.idle = false
	return true
}

// IdleCount returns the number of idle connections (for tests and stats).
func (p *Pool) IdleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, cs := range p.idle {
		n += len(cs)
	}
	return n
}

// validate rejects what http.Transport rejects before sending: invalid method, header
// names or values (no request smuggling through a proxy's header edits), Host.
func validate(req *http.Request) error {
	if req.URL == nil {
		return errors.New("h1client: nil request URL")
	}
	if !validMethod(req.Method) {
		return errors.New("h1client: invalid method " + req.Method)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("h1client: invalid header field name " + k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("h1client: invalid header field value for " + k)
			}
		}
	}
	for k := range req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("h1client: invalid trailer field name " + k)
		}
	}
	if !httpguts.ValidHostHeader(host(req)) {
		return errors.New("h1client: invalid Host header")
	}
	return nil
}

func host(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

func validMethod(m string) bool {
	if m == "" {
		return true // GET
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// tlsState returns the connection state of a TLS connection, else nil.
func tlsState(nc net.Conn) *tls.ConnectionState {
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}
