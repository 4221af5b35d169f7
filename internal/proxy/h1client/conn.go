package h1client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

const (
	// bufferSize is the read and write buffer of a connection (http.Transport's).
	bufferSize = 4 << 10
	// inlineBodyMax: a request body with a known length up to this size is written by
	// the request's goroutine before it reads the response (it fits the socket
	// buffers, so the write cannot wait for the upstream to read). Larger bodies and
	// bodies of unknown length are written concurrently (writeBody).
	inlineBodyMax = 64 << 10
	// maxHeaderBytes bounds a response's header block, 1xx responses included
	// (http.Transport's default MaxResponseHeaderBytes).
	maxHeaderBytes = 10 << 20
	// max1xx bounds the informational responses before the final one (http.Transport's).
	max1xx = 5
	// writeWait is how long a finished response waits for its request body's writer
	// before the connection is given up (http.Transport waits 50 ms too).
	writeWait = 50 * time.Millisecond
	// defaultUserAgent is sent when the request has no User-Agent key at all, as
	// http.Transport does; an empty value sends none.
	defaultUserAgent = "Go-http-client/1.1"
)

// conn is one upstream connection. Only the request holding it touches its buffers;
// the pool fields (idle, idleSince) are guarded by the pool's mutex.
type conn struct {
	pool *Pool
	key  Key
	nc   net.Conn // what requests are written to: TCP or TLS
	raw  net.Conn // the TCP connection under nc, closed to abort an exchange
	lr   limitedReader
	br   *bufio.Reader
	bw   *bufio.Writer
	tls  *tls.ConnectionState

	idleTimeout time.Duration
	maxRequests uint32
	uses        uint32
	reused      bool
	// aborted is set when the request's context ended during an exchange: the
	// connection was closed under it.
	aborted atomic.Bool
	abortFn func()

	idle      bool
	idleSince time.Time
	idleTimer *time.Timer
	closeOnce sync.Once
}

func newConn(p *Pool, nc net.Conn, t *Target) *conn {
	c := &conn{pool: p, key: t.Key, nc: nc, raw: nc, idleTimeout: t.IdleTimeout, maxRequests: t.MaxRequests}
	if c.idleTimeout <= 0 {
		c.idleTimeout = DefaultIdleTimeout
	}
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		c.raw = u.NetConn()
	}
	c.tls = tlsState(nc)
	c.lr = limitedReader{r: nc, n: math.MaxInt64}
	c.br = bufio.NewReaderSize(&c.lr, bufferSize)
	c.bw = bufio.NewWriterSize(nc, bufferSize)
	c.abortFn = c.abort
	c.idleTimer = time.AfterFunc(time.Hour, c.expire)
	c.idleTimer.Stop()
	return c
}

// abort runs when the request's context ends mid-exchange.
func (c *conn) abort() {
	c.aborted.Store(true)
	c.raw.Close()
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.idleTimer.Stop()
		c.nc.Close()
	})
}

// expire closes c when its idle timer fires and it is still idle.
func (c *conn) expire() {
	if c.pool.remove(c) {
		c.close()
	}
}

// staleError is a failure on a reused connection before any response byte: the
// upstream had closed it while idle, so the request may be sent again.
type staleError struct{ err error }

func (e *staleError) Error() string {
	return "h1client: reused connection closed by upstream: " + e.err.Error()
}
func (e *staleError) Unwrap() error { return e.err }

// bodyMode is how a request body is sent.
type bodyMode int

const (
	bodyNone bodyMode = iota
	bodyInline
	bodyStreamed
)

// exchange is one request and response on a connection.
type exchange struct {
	c    *conn
	req  *http.Request
	stop func() bool // stops the context watch
	// wrote receives the body writer's result (bodyStreamed).
	wrote chan error
	// keep: the connection may serve another request after this one.
	keep bool
	// gotByte: the upstream sent something back.
	gotByte bool
	info    Informational
}

// roundTrip sends req on c and reads the response head. c belongs to the exchange
// until the response body ends.
func (c *conn) roundTrip(req *http.Request, info Informational) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		c.pool.put(c)
		return nil, err
	}
	c.uses++
	last := c.maxRequests > 0 && c.uses >= c.maxRequests
	ex := &exchange{c: c, req: req, info: info, keep: !last && !req.Close && !hasToken(req.Header["Connection"], "close")}
	if ctx.Done() != nil {
		ex.stop = context.AfterFunc(ctx, c.abortFn)
	}
	mode := bodyNone
	if req.Body != nil && req.Body != http.NoBody {
		switch {
		case req.ContentLength > 0 && req.ContentLength <= inlineBodyMax:
			mode = bodyInline
		case req.ContentLength != 0:
			mode = bodyStreamed
		}
	}
	if mode == bodyNone {
		closeBody(req)
	}
	c.writeHead(req, mode, !ex.keep)
	var werr error
	switch mode {
	case bodyNone:
		werr = c.bw.Flush()
	case bodyInline:
		werr = c.copyBody(req, req.ContentLength)
		closeBody(req)
		if werr == nil {
			werr = c.bw.Flush()
		}
	case bodyStreamed:
		ex.wrote = make(chan error, 1)
		go func() { ex.wrote <- c.writeBody(req) }()
	}
	if werr != nil {
		var be *bodyReadError
		if errors.As(werr, &be) {
			// The downstream body failed: nothing sensible was sent.
			ex.fail()
			return nil, be.err
		}
		// The upstream may have answered and closed (an early 413, say): read on.
		ex.keep = false
	}
	resp, err := ex.readResponse()
	if err != nil {
		ex.fail()
		if c.aborted.Load() {
			return nil, ctx.Err()
		}
		if werr != nil {
			err = werr
		}
		if c.reused && c.br.Buffered() == 0 && !ex.gotByte {
			return nil, &staleError{err: err}
		}
		return nil, err
	}
	return resp, nil
}

// readResponse reads the final response head; 1xx answers go to the request's
// ClientTrace (ReverseProxy forwards them downstream).
func (ex *exchange) readResponse() (*http.Response, error) {
	c := ex.c
	c.lr.n = maxHeaderBytes
	if _, err := c.br.Peek(1); err != nil {
		return nil, c.readErr(err)
	}
	ex.gotByte = true
	var trace *httptrace.ClientTrace
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(c.br, ex.req)
		if err != nil {
			return nil, c.readErr(err)
		}
		code := resp.StatusCode
		if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
			if n >= max1xx {
				return nil, errors.New("h1client: too many 1xx informational responses")
			}
			got := ex.info
			if got == nil {
				if n == 0 {
					trace = httptrace.ContextClientTrace(ex.req.Context())
				}
				if trace != nil && trace.Got1xxResponse != nil {
					got = traceInformational{trace}
				}
			}
			if got != nil {
				if err := got.Got1xx(code, textproto.MIMEHeader(resp.Header)); err != nil {
					return nil, err
				}
				c.lr.n = maxHeaderBytes
			}
			continue
		}
		c.lr.n = math.MaxInt64
		if code == http.StatusSwitchingProtocols {
			return nil, errors.New("h1client: unexpected 101 Switching Protocols")
		}
		resp.TLS = c.tls
		if resp.Close {
			ex.keep = false
		}
		if resp.Body == http.NoBody {
			ex.finish(true)
			return resp, nil
		}
		resp.Body = &body{ex: ex, rc: resp.Body}
		return resp, nil
	}
}

// traceInformational hands 1xx answers to a ClientTrace.
type traceInformational struct{ t *httptrace.ClientTrace }

func (t traceInformational) Got1xx(code int, h textproto.MIMEHeader) error {
	return t.t.Got1xxResponse(code, h)
}

func (c *conn) readErr(err error) error {
	if errors.Is(err, errHeaderTooLarge) {
		return fmt.Errorf("h1client: response headers exceeded %d bytes", maxHeaderBytes)
	}
	return err
}

// finish ends the exchange: the connection goes back to the pool when the response
// was read to its end, the request was fully written and neither side asked to close.
func (ex *exchange) finish(complete bool) {
	c := ex.c
	keep := complete && ex.keep
	if ex.stop != nil && !ex.stop() {
		keep = false // the context watch fired: the connection is closed
	}
	if ex.wrote != nil {
		if keep {
			t := time.NewTimer(writeWait)
			select {
			case err := <-ex.wrote:
				keep = err == nil
			case <-t.C:
				keep = false
			}
			t.Stop()
		}
	}
	// Bytes after the response's end are not an answer to anything: the connection is
	// out of step (http.Transport closes it too).
	if keep && !c.aborted.Load() && c.br.Buffered() == 0 {
		c.pool.put(c)
		return
	}
	c.close()
}

// fail ends an exchange that produced no response.
func (ex *exchange) fail() {
	ex.keep = false
	ex.finish(false)
}

// body is a response body; reading it to its end releases the connection.
type body struct {
	ex   *exchange
	rc   io.ReadCloser
	done bool
	err  error
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.done, b.err = true, io.EOF
		b.ex.finish(true)
	case err != nil:
		if b.ex.c.aborted.Load() {
			if cerr := b.ex.req.Context().Err(); cerr != nil {
				err = cerr
			}
		}
		b.done, b.err = true, err
		b.ex.finish(false)
	}
	return n, err
}

// Close gives the connection up unless the body was read to its end (the rest of a
// body is not drained: it may be long or endless).
func (b *body) Close() error {
	if !b.done {
		b.done, b.err = true, errors.New("h1client: read on closed response body")
		b.ex.finish(false)
	}
	return nil
}

// writeHead puts the request line and header block into the write buffer.
func (c *conn) writeHead(req *http.Request, mode bodyMode, closeConn bool) {
	w := c.bw
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host(req))
	w.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: " + defaultUserAgent + "\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		writeField(w, "User-Agent", ua[0])
	}
	switch {
	case mode == bodyStreamed && req.ContentLength < 0:
		w.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			w.WriteString("Trailer: ")
			i := 0
			for k := range req.Trailer {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(k)
				i++
			}
			w.WriteString("\r\n")
		}
	case mode != bodyNone:
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), req.ContentLength, 10))
		w.WriteString("\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		// Many servers expect a length for these methods (http.Transport sends it too).
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vv {
			writeField(w, k, v)
		}
	}
	if closeConn && !hasToken(req.Header["Connection"], "close") {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

func writeField(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(textproto.TrimString(v))
	w.WriteString("\r\n")
}

// bodyReadError is a failure reading the request body (the downstream's side).
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// copyBody copies exactly n bytes of the request body through the write buffer, read
// straight into the buffer's free space.
func (c *conn) copyBody(req *http.Request, n int64) error {
	w := c.bw
	for n > 0 {
		if w.Available() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		buf := w.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		m, err := req.Body.Read(buf)
		if m > 0 {
			w.Write(buf[:m])
			n -= int64(m)
		}
		if err == io.EOF {
			if n > 0 {
				return &bodyReadError{fmt.Errorf("h1client: request body shorter than its ContentLength (%d bytes missing)", n)}
			}
			return nil
		}
		if err != nil {
			return &bodyReadError{err}
		}
	}
	return nil
}

// writeBody writes a large or unknown-length body while the response is read, each
// read flushed at once (a streamed request reaches the upstream as it comes).
func (c *conn) writeBody(req *http.Request) error {
	defer closeBody(req)
	if err := c.bw.Flush(); err != nil {
		return err
	}
	w := c.bw
	if req.ContentLength > 0 {
		if err := c.copyStreamed(req, req.ContentLength); err != nil {
			return err
		}
		return w.Flush()
	}
	// Chunked: one chunk per read.
	for {
		if w.Available() < 64 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		buf := w.AvailableBuffer()
		// Leave room for the chunk framing (size line and CRLF).
		room := cap(buf) - 16
		m, err := req.Body.Read(buf[16 : 16+room])
		if m > 0 {
			w.Write(strconv.AppendUint(buf[:0], uint64(m), 16))
			w.WriteString("\r\n")
			// The data moved: it sat after the room left for the size line.
			data := buf[16 : 16+m]
			w.Write(data)
			w.WriteString("\r\n")
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	w.WriteString("0\r\n")
	for k, vv := range req.Trailer {
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				writeField(w, k, v)
			}
		}
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// copyStreamed copies n bytes flushing after every read.
func (c *conn) copyStreamed(req *http.Request, n int64) error {
	w := c.bw
	for n > 0 {
		buf := w.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		m, err := req.Body.Read(buf)
		if m > 0 {
			w.Write(buf[:m])
			n -= int64(m)
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			if n > 0 {
				return fmt.Errorf("h1client: request body shorter than its ContentLength (%d bytes missing)", n)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// hasToken reports whether a comma-separated header holds token (case-insensitive).
func hasToken(vv []string, token string) bool {
	return len(vv) > 0 && httpguts.HeaderValuesContainsToken(vv, token)
}

// errHeaderTooLarge: the response head passed maxHeaderBytes.
var errHeaderTooLarge = errors.New("h1client: header limit reached")

// limitedReader reads from the connection up to n bytes (the header limit while a
// head is read; unlimited otherwise).
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
