package forward

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/upstream"
)

// Errors that decide the status of a response the proxy generates itself.
var (
	ErrNoRoute           = errors.New("no route matched")
	ErrNoCluster         = errors.New("route names an unknown cluster")
	ErrNoHealthyUpstream = errors.New("no healthy upstream")
)

// ConnectError is a failure to connect to an upstream endpoint: nothing was sent, so the
// request may be retried elsewhere.
type ConnectError struct {
	Address string
	Err     error
}

func (e *ConnectError) Error() string { return "connect to " + e.Address + ": " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// Options configure a Forwarder.
type Options struct {
	Config  *atomic.Pointer[Config]
	Metrics *stats.Metrics
	Logger  *slog.Logger
}

// Forwarder serves HTTP requests and TCP connections with the current Config.
type Forwarder struct {
	cfg     *atomic.Pointer[Config]
	metrics *stats.Metrics
	log     *slog.Logger
	proxy   *httputil.ReverseProxy
	h1, h2  *http.Transport
}

type ctxKey int

const (
	clusterKey ctxKey = iota
	connectTimeoutKey
)

// New returns a Forwarder. Its connection pools are shared by all configs, keyed by
// endpoint address, so a config swap keeps warm connections.
func New(opts Options) *Forwarder {
	f := &Forwarder{cfg: opts.Config, metrics: opts.Metrics, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.h1 = &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// The proxy forwards bodies as they are; it must not add gzip itself.
		DisableCompression: true,
	}
	f.h2 = &http.Transport{DialContext: dial, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	f.h2.Protocols = new(http.Protocols)
	f.h2.Protocols.SetUnencryptedHTTP2(true)
	f.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		BufferPool:     newBufferPool(),
		Transport:      roundTripper{f},
		FlushInterval:  0, // unsized (gRPC, chunked) and event-stream responses still flush per write
		ErrorHandler:   f.writeError,
		ModifyResponse: trailersOnlyToTrailers,
		ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
	}
	return f
}

// Close releases idle upstream connections.
func (f *Forwarder) Close() {
	f.h1.CloseIdleConnections()
	f.h2.CloseIdleConnections()
}

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if t, ok := ctx.Value(connectTimeoutKey).(time.Duration); ok && t > 0 {
		d.Timeout = t
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &ConnectError{Address: addr, Err: err}
	}
	return conn, nil
}

// rewrite keeps Host (the upstream sees the name the client used) and, because
// ReverseProxy drops X-Forwarded-* when Rewrite is used, puts back the client's ones.
func rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host // replaced by the chosen endpoint in RoundTrip
	pr.Out.Host = pr.In.Host
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	if pr.Out.Header.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		pr.Out.Header.Set("X-Forwarded-Proto", proto)
	}
	if pr.Out.Header.Get("X-Request-Id") == "" {
		pr.Out.Header.Set("X-Request-Id", newRequestID())
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40 // UUID v4 layout, as Envoy generates
	b[8] = (b[8] & 0x3f) | 0x80
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// HTTPHandler serves requests arriving on the named listener.
func (f *Forwarder) HTTPHandler(listener string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serveHTTP(listener, w, r)
	})
}

func (f *Forwarder) serveHTTP(listener string, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	cfg := f.cfg.Load()
	var routeName, clusterName string
	defer func() {
		f.metrics.ObserveRequest(clusterName, routeName, rec.status(), time.Since(start))
	}()
	var l *Listener
	if cfg != nil {
		l = cfg.Listeners[listener]
	}
	if l == nil || l.Routes == nil {
		f.writeError(rec, r, ErrNoRoute)
		return
	}
	rt := l.Routes.Match(r)
	if rt == nil {
		f.writeError(rec, r, ErrNoRoute)
		return
	}
	routeName = rt.Name
	clusterName = rt.PickCluster()
	c := cfg.Clusters[clusterName]
	if c == nil {
		f.writeError(rec, r, fmt.Errorf("%w %q", ErrNoCluster, clusterName))
		return
	}
	ctx := r.Context()
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
	}
	ctx = context.WithValue(ctx, clusterKey, c)
	f.proxy.ServeHTTP(rec, r.WithContext(ctx))
}

// roundTripper picks an endpoint of the request's cluster and sends the request there
// with the cluster's protocol, retrying once elsewhere if the connect fails.
type roundTripper struct{ f *Forwarder }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(clusterKey).(*upstream.Cluster)
	if c == nil {
		return nil, ErrNoCluster
	}
	transport := rt.f.h1
	if c.HTTP2 || c.UseDownstreamProtocol && req.ProtoMajor == 2 {
		transport = rt.f.h2
	}
	var body *onceBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &onceBody{rc: req.Body}
	}
	ctx := context.WithValue(req.Context(), connectTimeoutKey, c.ConnectTimeout)
	var failed *upstream.Endpoint
	for attempt := 0; ; attempt++ {
		ep := c.Pick(failed)
		if ep == nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, ErrNoHealthyUpstream)
		}
		out := req.WithContext(ctx)
		u := *req.URL
		u.Host = ep.Address
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		done := ep.Begin()
		resp, err := transport.RoundTrip(out)
		if err != nil {
			done()
			var ce *ConnectError
			if errors.As(err, &ce) && attempt == 0 && ep != failed && len(c.Endpoints()) > 1 && (body == nil || !body.used.Load()) {
				failed = ep
				continue
			}
			return nil, err
		}
		resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
		return resp, nil
	}
}

// onceBody lets a request body survive a failed connect: the transport closes bodies on
// error, but nothing was read yet, so the next attempt may still send it. The server
// closes the real body when the handler returns.
type onceBody struct {
	rc   io.ReadCloser
	used atomic.Bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	b.used.Store(true)
	return b.rc.Read(p)
}

func (b *onceBody) Close() error { return nil }

// doneBody ends the endpoint's active-request count when the response is consumed.
type doneBody struct {
	io.ReadCloser
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// writeError answers with the status docs/XDS.md gives the failure; gRPC callers get a
// gRPC status in a trailers-only response so their client library reports it.
func (f *Forwarder) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, grpcCode := http.StatusServiceUnavailable, 14 // UNAVAILABLE
	var ce *ConnectError
	switch {
	case errors.Is(err, ErrNoRoute):
		code, grpcCode = http.StatusNotFound, 12 // UNIMPLEMENTED
	case errors.As(err, &ce):
		// A connect timeout is a connect failure (503), not a route timeout.
	case errors.Is(err, context.DeadlineExceeded):
		code, grpcCode = http.StatusGatewayTimeout, 4 // DEADLINE_EXCEEDED
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this, but stats should say so.
		if rec, ok := w.(*recorder); ok {
			rec.code = 499
		}
		return
	}
	f.log.Debug("request failed", "host", r.Host, "path", r.URL.Path, "status", code, "error", err)
	msg := err.Error()
	if isGRPC(r) {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcCode))
		h.Set("Grpc-Message", msg)
		if rec, ok := w.(*recorder); ok {
			rec.grpcStatus = code
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// grpcTrailerKeys are the fields of a gRPC status.
var grpcTrailerKeys = []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"}

// trailersOnlyToTrailers turns a gRPC "trailers-only" answer (status in the one and
// only HEADERS frame) into headers plus trailers. The proxy streams responses, so it
// may send the headers before it knows no body follows; a grpc-status in those early
// headers would then be followed by an END_STREAM without trailers, which gRPC clients
// reject ("server closed the stream without sending trailers").
func trailersOnlyToTrailers(resp *http.Response) error {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") || resp.Header.Get("Grpc-Status") == "" {
		return nil
	}
	if resp.Trailer == nil {
		resp.Trailer = http.Header{}
	}
	for _, k := range grpcTrailerKeys {
		if v, ok := resp.Header[k]; ok {
			resp.Trailer[k] = v
			delete(resp.Header, k)
		}
	}
	return nil
}

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// recorder remembers the response status for metrics; Unwrap keeps Flush and the other
// ResponseController features of the underlying writer reachable.
type recorder struct {
	http.ResponseWriter
	code       int
	grpcStatus int // HTTP status equivalent of a proxy-generated gRPC error, for stats
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	switch {
	case r.grpcStatus != 0:
		return r.grpcStatus
	case r.code == 0:
		return http.StatusOK
	}
	return r.code
}
