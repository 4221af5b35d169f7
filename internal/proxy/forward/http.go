package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"skein.dev/skein/internal/proxy/h1client"
	"skein.dev/skein/internal/proxy/inspect"

	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
	"skein.dev/skein/internal/proxy/tracing"
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
	Config *atomic.Pointer[Config]
	// Metrics holds the proxy's own (non-Istio) metrics: TLS, refused connections.
	Metrics *stats.Metrics
	// Telemetry receives every finished request and connection; required.
	Telemetry *telemetry.Hub
	// Tracer, when not nil, makes a span per request.
	Tracer *tracing.Tracer
	Logger *slog.Logger
	// OnUnknownHost, optional, is asked about an outbound request whose Host no
	// virtual host matches (ondemand.go).
	OnUnknownHost UnknownHostFunc
}

// Forwarder serves HTTP requests and TCP connections with the current Config.
type Forwarder struct {
	cfg     *atomic.Pointer[Config]
	metrics *stats.Metrics
	tel     *telemetry.Hub
	tracer  *tracing.Tracer
	log     *slog.Logger
	// proxy forwards protocol upgrades; forward (proxy.go) everything else.
	proxy   *httputil.ReverseProxy
	buffers bufferPool
	h1, h2  *http.Transport
	// h1c carries HTTP/1.1 requests (h1.go); the transports the rest.
	h1c *h1client.Pool
	tls tlsTransports
	// idlePools: transports with a cluster's idle timeout (pool.go).
	idlePools     idlePools
	onUnknownHost UnknownHostFunc
}

type ctxKey int

const (
	stateKey ctxKey = iota
	connectTimeoutKey
	bindKey
)

// reqState is what the reverse proxy's hooks (RoundTrip, ModifyResponse,
// ErrorHandler) need to know about the request being served.
type reqState struct {
	cluster *upstream.Cluster
	info    *streaminfo.Info
	// routeTimeout is set when the route has a timeout, so a deadline is known to be
	// the route's (UT) rather than the caller's.
	routeTimeout bool
	// pick is the request's hash for consistent-hash clusters; setCookie a generated
	// hash cookie for the response (pool.go).
	pick      upstream.Request
	setCookie string
	// retry is the route's retry policy (nil: implicitRetry); budget its retry budget.
	retry  *resource.RetryPolicy
	budget *route.Budget
	// respHeaders are the header edits of the response (cluster's, then route's) and
	// cors the CORS headers it gets.
	respHeaders []resource.HeaderMutation
	cors        http.Header
	// rw receives 1xx answers while the round trip is in flight (Got1xx, proxy.go);
	// nil when ReverseProxy forwards them.
	rw    http.ResponseWriter
	mu1xx sync.Mutex
	// target is the h1client target of the attempt in flight (kept here to save an
	// allocation per attempt).
	target h1client.Target
}

// New returns a Forwarder. Its connection pools are shared by all configs, keyed by
// endpoint address, so a config swap keeps warm connections.
func New(opts Options) *Forwarder {
	f := &Forwarder{cfg: opts.Config, metrics: opts.Metrics, tel: opts.Telemetry, tracer: opts.Tracer, log: opts.Logger, onUnknownHost: opts.OnUnknownHost}
	if f.metrics == nil {
		f.metrics = stats.New()
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.tel == nil {
		f.tel, _ = telemetry.New(telemetry.Options{})
	}
	f.h1 = &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// The proxy forwards bodies as they are; it must not add gzip itself.
		DisableCompression: true,
	}
	f.h1c = h1client.New(dialH1)
	f.h2 = &http.Transport{DialContext: dial, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	f.h2.Protocols = new(http.Protocols)
	f.h2.Protocols.SetUnencryptedHTTP2(true)
	f.buffers = newBufferPool()
	f.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		BufferPool:     f.buffers,
		Transport:      roundTripper{f},
		FlushInterval:  0, // unsized (gRPC, chunked) and event-stream responses still flush per write
		ErrorHandler:   f.writeError,
		ModifyResponse: f.modifyResponse,
		ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
	}
	return f
}

// Close releases idle upstream connections.
func (f *Forwarder) Close() {
	f.h1.CloseIdleConnections()
	f.h1c.CloseIdle()
	f.h2.CloseIdleConnections()
	f.tls.closeIdle()
	f.idlePools.closeIdle()
}

// dialContext carries the cluster's connect timeout and source address to dial.
func dialContext(ctx context.Context, c *upstream.Cluster) context.Context {
	ctx = context.WithValue(ctx, connectTimeoutKey, c.ConnectTimeout)
	if c.BindAddress != "" {
		ctx = context.WithValue(ctx, bindKey, c.BindAddress)
	}
	return ctx
}

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	timeout, _ := ctx.Value(connectTimeoutKey).(time.Duration)
	bind, _ := ctx.Value(bindKey).(string)
	conn, err := dialTCP(ctx, addr, timeout, bind, dialKeepAlive(ctx)) // cluster keepalive (pool.go)
	if err != nil {
		return nil, err
	}
	return countConn(ctx, conn), nil
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

// HTTPHandler serves requests arriving on the named listener's filter chain.
func (f *Forwarder) HTTPHandler(listener, chain string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serveHTTP(listener, chain, w, r)
	})
}

func (f *Forwarder) serveHTTP(listener, chain string, w http.ResponseWriter, r *http.Request) {
	cfg := f.cfg.Load()
	var l *Chain
	dir := streaminfo.Outbound
	if cfg != nil && cfg.Listeners[listener] != nil {
		dir = cfg.Listeners[listener].Direction
		l = cfg.Listeners[listener].Chain(chain)
	}
	proto := streaminfo.ProtocolHTTP
	if isGRPC(r) {
		proto = streaminfo.ProtocolGRPC
	}
	info := streaminfo.New(listener, dir, proto)
	info.Method, info.Path, info.Authority = r.Method, r.URL.RequestURI(), r.Host
	info.UserAgent, info.HTTPVersion, info.DownstreamAddress = r.UserAgent(), r.Proto, r.RemoteAddr
	info.Scheme = "http"
	if r.TLS != nil {
		info.Scheme = "https"
	}
	if ids := r.Header["X-Request-Id"]; len(ids) > 0 && ids[0] != "" {
		info.RequestID = ids[0]
	} else {
		info.RequestID = newRequestID()
		r.Header["X-Request-Id"] = []string{info.RequestID}
	}
	tel := f.tel
	if dir == streaminfo.Inbound {
		info.DownstreamPeer = tel.Peers.Decode(headerValue(r.Header, telemetry.PeerHeader))
		delete(r.Header, telemetry.PeerHeader)
		info.UpstreamPeer = tel.Local
		info.Service = tel.Services.ForAuthority(r.Host, tel.Local.Namespace)
		info.Security, info.DownstreamPrincipal = downstreamSecurity(r.Context(), r.TLS)
	} else {
		info.DownstreamPeer = tel.Local
		r.Header[telemetry.PeerHeader] = []string{tel.LocalHeader}
	}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{rc: r.Body}
		r.Body = body
	}
	rec := &recorder{ResponseWriter: w, info: info}
	ctx := r.Context()
	var span trace.Span
	if f.tracer != nil {
		ctx, span = f.tracer.Start(ctx, r, info)
	}
	defer func() {
		p := recover()
		if p != nil {
			// The reverse proxy aborts the response when copying the body fails.
			if r.Context().Err() != nil {
				info.Flags |= streaminfo.DownstreamConnectionTermination
			} else {
				info.Flags |= streaminfo.UpstreamConnectionTermination
			}
		}
		f.finishHTTP(info, rec, body, span)
		if p != nil {
			panic(p)
		}
	}()
	if l == nil || l.Routes == nil {
		f.writeError(rec, r, ErrNoRoute)
		return
	}
	r, ok := runHTTPFilters(listener, l, rec, r)
	if !ok {
		return
	}
	vh, rt := l.Routes.Select(r, nil)
	if vh == nil && dir == streaminfo.Outbound && f.onUnknownHost != nil {
		cfg, l, vh, rt = f.awaitHost(ctx, listener, chain, cfg, l, r)
	}
	if vh != nil {
		info.VirtualHost = vh.Name
	}
	if rt == nil {
		f.writeError(rec, r, ErrNoRoute)
		return
	}
	info.Route = rt.Name
	st := &reqState{info: info, routeTimeout: rt.Timeout > 0, retry: rt.Retry, budget: rt.Budget}
	if l.CORS && rt.CORS != nil {
		var answered bool
		if st.cors, answered = handleCORS(rec, r, rt.CORS); answered {
			return
		}
	}
	if l.Fault && rt.Fault != nil && !injectFault(ctx, rec, r, rt.Fault, info) {
		return
	}
	if rt.Redirect != nil {
		writeRedirect(rec, r, rt.Redirect)
		return
	}
	if rt.Direct != nil {
		writeDirect(rec, rt.Direct.Status, rt.Direct.Body)
		return
	}
	applyXFCC(r, l)
	wc := rt.PickWeightedCluster()
	info.Cluster = wc.Name
	if dir == streaminfo.Outbound {
		info.Service = tel.Services.ForCluster(info.Cluster)
	}
	c := cfg.Clusters[info.Cluster]
	if c == nil {
		if rt.ClusterNotFoundStatus != 0 {
			info.Flags |= streaminfo.NoClusterFound
			writeDirect(rec, rt.ClusterNotFoundStatus, "")
			return
		}
		f.writeError(rec, r, fmt.Errorf("%w %q", ErrNoCluster, info.Cluster))
		return
	}
	st.cluster = c
	prepareUpstream(st, c, rt, r)
	// Envoy's order: the weighted cluster's edits, then the route's (which win).
	applyHeaders(r.Header, wc.RequestHeaders)
	applyHeaders(r.Header, rt.RequestHeaders)
	applyRewrite(r, rt)
	for _, m := range []resource.HeaderMutation{wc.ResponseHeaders, rt.ResponseHeaders} {
		if !m.Empty() {
			st.respHeaders = append(st.respHeaders, m)
		}
	}
	if len(rt.Mirrors) > 0 {
		f.mirror(cfg, r, rt)
	}
	if st.budget != nil {
		st.budget.Request()
	}
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
	}
	f.forward(rec, r, ctx, st)
}

// writeDirect answers with a status and body the route configuration gives.
func writeDirect(w http.ResponseWriter, status int, body string) {
	if body != "" {
		w.Header().Set("Content-Type", "text/plain")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// finishHTTP completes the request's info and hands it to telemetry.
func (f *Forwarder) finishHTTP(info *streaminfo.Info, rec *recorder, body *countingBody, span trace.Span) {
	info.Duration = time.Since(info.Start)
	info.ResponseCode = rec.code
	info.BytesSent = rec.bytes
	if body != nil {
		info.BytesReceived = body.n.Load()
	}
	if info.Protocol == streaminfo.ProtocolGRPC {
		h := rec.Header()
		v := headerValue(h, "Grpc-Status")
		if v == "" {
			v = headerValue(h, http.TrailerPrefix+"Grpc-Status")
		}
		if n, err := strconv.Atoi(v); err == nil {
			info.GRPCStatus = n
		}
	}
	if span != nil {
		f.tracer.End(span, info)
	}
	f.tel.FinishHTTP(info)
}

func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// downstreamSecurity is the connection's mutual-TLS state: the peer info the listener
// recorded when it terminated TLS, else the server's own TLS state.
func downstreamSecurity(ctx context.Context, cs *tls.ConnectionState) (streaminfo.SecurityPolicy, string) {
	if info, ok := peer.FromContext(ctx); ok && info.TLS {
		if info.ID.IsZero() {
			return streaminfo.SecurityNone, ""
		}
		return streaminfo.SecurityMutualTLS, info.ID.String()
	}
	return securityOf(cs)
}

// securityOf reads a downstream TLS connection: mutual TLS when the peer presented a
// certificate, whose first URI SAN (the SPIFFE ID) is the principal.
func securityOf(cs *tls.ConnectionState) (streaminfo.SecurityPolicy, string) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return streaminfo.SecurityNone, ""
	}
	if uris := cs.PeerCertificates[0].URIs; len(uris) > 0 {
		return streaminfo.SecurityMutualTLS, uris[0].String()
	}
	return streaminfo.SecurityMutualTLS, ""
}

// modifyResponse runs on the upstream's response headers: the route's header edits
// and CORS headers, metadata exchange, then the gRPC trailers-only fix.
func (f *Forwarder) modifyResponse(resp *http.Response) error {
	st, _ := resp.Request.Context().Value(stateKey).(*reqState)
	return f.applyResponse(resp, st)
}

// applyResponse is modifyResponse for a known request state.
func (f *Forwarder) applyResponse(resp *http.Response, st *reqState) error {
	if st != nil {
		for _, m := range st.respHeaders {
			applyHeaders(resp.Header, m)
		}
		for k, v := range st.cors {
			resp.Header[k] = v
		}
		if st.info.Direction == streaminfo.Inbound {
			resp.Header[telemetry.PeerHeader] = []string{f.tel.LocalHeader}
		} else {
			st.info.UpstreamPeer = f.tel.Peers.Decode(headerValue(resp.Header, telemetry.PeerHeader))
			delete(resp.Header, telemetry.PeerHeader)
			if resp.TLS != nil {
				_, st.info.UpstreamPrincipal = securityOf(resp.TLS)
			}
		}
		if st.setCookie != "" {
			resp.Header.Add("Set-Cookie", st.setCookie)
		}
	}
	return trailersOnlyToTrailers(resp)
}

// countingBody counts the request body bytes read (by the transport's goroutine).
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// roundTripper picks an endpoint of the request's cluster and sends the request there
// with the cluster's protocol, retrying as the route's retry policy says (retry.go).
type roundTripper struct{ f *Forwarder }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(stateKey).(*reqState)
	if st == nil {
		return nil, ErrNoCluster
	}
	return rt.roundTrip(req, st)
}

func (rt roundTripper) roundTrip(req *http.Request, st *reqState) (*http.Response, error) {
	c := st.cluster
	http2 := c.HTTP2 || c.UseDownstreamProtocol && req.ProtoMajor == 2
	if req.Header.Get("Upgrade") != "" {
		// An HTTP/1.1 Upgrade (WebSocket) cannot cross an HTTP/2 connection (that
		// would need extended CONNECT, RFC 8441): such a request goes upstream over
		// HTTP/1.1 whatever the cluster's protocol, so upgrades work on ports shared
		// with HTTP/2 and gRPC.
		http2 = false
	}
	ctx := req.Context()
	if c.OriginalDst {
		dst, err := originalDestination(inspect.ConnFromContext(req.Context()))
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		out := req.WithContext(dialContext(ctx, c))
		u := *req.URL
		u.Host = dst
		out.URL = &u
		var transport http.RoundTripper = rt.f.h1
		if http2 {
			transport = rt.f.h2
		}
		st.info.UpstreamHost = dst
		return transport.RoundTrip(out)
	}
	// Circuit breakers: one slot per request, whatever its attempts (UO on overflow).
	release, err := c.AdmitRequest(req.Context(), http2)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	policy := st.retry
	if policy == nil {
		policy = implicitRetry
	}
	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		body = newReplayBody(req.Body)
	}
	var tried []*upstream.Endpoint
	var retrySlot func() // a max_retries slot held by the attempt in flight
	for retries := 0; ; retries++ {
		ep := pickEndpoint(c, tried, policy, st.pick)
		if ep == nil {
			release()
			return nil, fmt.Errorf("cluster %s: %w", c.Name, ErrNoHealthyUpstream)
		}
		attemptCtx, stopPerTry, cancel := perTryContext(ctx, policy.PerTryTimeout)
		fast := useH1Client(req, ep, http2)
		var transport http.RoundTripper = rt.f.h1
		var out *http.Request
		if fast {
			out = req.WithContext(attemptCtx)
		} else {
			// http.Transport's dialer reads the cluster's connection options here.
			tctx := poolContext(dialContext(attemptCtx, c), c)
			if ep.TLS != nil {
				tctx = context.WithValue(tctx, tlsClientKey, ep.TLS)
			}
			if st.rw != nil {
				tctx = httptrace.WithClientTrace(tctx, &httptrace.ClientTrace{Got1xxResponse: st.Got1xx})
			}
			out = req.WithContext(tctx)
		}
		u := *req.URL
		u.Host = ep.Address
		switch {
		case ep.TLS != nil:
			u.Scheme = "https"
			if !fast {
				transport = rt.f.tls.get(ep.TLS.Key, http2)
			}
		case http2:
			transport = rt.f.h2
		}
		out.URL = &u
		if body != nil {
			out.Body = body.attempt()
			out.GetBody = body.getBody
		}
		st.info.UpstreamHost = ep.Address
		done := ep.Begin()
		start := time.Now()
		var resp *http.Response
		var err error
		if fast {
			st.target = h1Target(c, ep)
			if st.rw != nil {
				st.target.Informational = st
			}
			resp, err = rt.f.h1c.RoundTrip(out, &st.target)
		} else {
			resp, err = rt.f.pooled(c, transport, http2).RoundTrip(out)
		}
		perTry := stopPerTry()
		if perTry {
			if resp != nil {
				resp.Body.Close()
				resp = nil
			}
			err = errPerTryTimeout
		}
		// Outcomes feed outlier detection and peak EWMA (pool.go).
		if err != nil {
			observeError(c, ep, req, err, start)
		} else {
			c.ObserveResponse(ep, resp.StatusCode, time.Since(start))
		}
		if retrySlot != nil {
			retrySlot()
			retrySlot = nil
		}
		tried = append(tried, ep)
		finish := func() (*http.Response, error) { return finishAttempt(resp, err, done, cancel, release) }
		if req.Context().Err() != nil || !retryable(policy, resp, err, perTry) {
			return finish()
		}
		if policy == implicitRetry {
			// Without a policy only a connect failure is retried, once, elsewhere, and
			// only when the body was not touched.
			if retries >= 1 || len(c.Endpoints()) < 2 || body != nil && body.started() {
				return finish()
			}
		} else {
			if retries >= policy.NumRetries {
				st.info.Flags |= streaminfo.UpstreamRetryLimitExceeded
				return finish()
			}
			if body != nil && !body.replayable() {
				return finish()
			}
			if st.budget != nil && !st.budget.TryRetry() {
				st.info.Flags |= streaminfo.UpstreamOverflow
				return finish()
			}
			// The cluster's max_retries circuit breaker (UO when open).
			slot, ok := c.AdmitRetry()
			if !ok {
				st.info.Flags |= streaminfo.UpstreamOverflow
				return finish()
			}
			retrySlot = slot
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		done()
		cancel()
		st.info.UpstreamRetries++
		if policy != implicitRetry {
			if err := sleepCtx(ctx, backoff(policy, retries)); err != nil {
				if retrySlot != nil {
					retrySlot()
				}
				release()
				return nil, err
			}
		}
	}
}

// finishAttempt hands the last attempt's outcome back: on an error it ends the
// endpoint's active request, the attempt's context and the circuit-breaker slot at
// once; with a response, when its body is closed.
func finishAttempt(resp *http.Response, err error, done, cancel, release func()) (*http.Response, error) {
	if err != nil {
		done()
		cancel()
		release()
		return nil, err
	}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection (WebSocket): ReverseProxy copies both ways through
		// the body, so it must stay writable.
		resp.Body = &doneUpgradedBody{ReadWriteCloser: rw, done: func() { done(); cancel(); release() }}
		return resp, nil
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done, cancel: cancel, release: release}
	return resp, nil
}

// doneUpgradedBody is doneBody for the connection of a 101 Switching Protocols answer.
type doneUpgradedBody struct {
	io.ReadWriteCloser
	done func()
	once sync.Once
}

func (b *doneUpgradedBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.once.Do(b.done)
	return err
}

// doneBody ends the endpoint's active-request count, the attempt's context and the
// circuit-breaker slot when the response is consumed (three funcs rather than one
// closure over them: one allocation less per request).
type doneBody struct {
	io.ReadCloser
	done, cancel, release func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	b.cancel()
	b.release()
	return err
}

// writeError answers with the status docs/XDS.md gives the failure and records its
// response flag; gRPC callers get a gRPC status in a trailers-only response so their
// client library reports it.
func (f *Forwarder) writeError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey).(*reqState)
	f.writeErrorState(w, r, err, st)
}

// writeErrorState is writeError for a known request state (nil: none yet).
func (f *Forwarder) writeErrorState(w http.ResponseWriter, r *http.Request, err error, st *reqState) {
	code, grpcCode := http.StatusServiceUnavailable, 14 // UNAVAILABLE
	var flag streaminfo.Flags
	var ce *ConnectError
	switch {
	case errors.Is(err, ErrNoRoute):
		code, grpcCode, flag = http.StatusNotFound, 12, streaminfo.NoRouteFound // UNIMPLEMENTED
	case errors.Is(err, ErrNoCluster):
		flag = streaminfo.NoClusterFound
	case errors.Is(err, ErrNoHealthyUpstream):
		flag = streaminfo.NoHealthyUpstream
	case errors.Is(err, upstream.ErrOverflow):
		flag, _ = overflowFlag(w, err)
	case errors.As(err, &ce):
		// A connect timeout is a connect failure (503), not a route timeout.
		flag = streaminfo.UpstreamConnectionFailure
	case errors.Is(err, errPerTryTimeout):
		code, grpcCode, flag = http.StatusGatewayTimeout, 4, streaminfo.UpstreamRequestTimeout
	case errors.Is(err, context.DeadlineExceeded) && (st == nil || st.routeTimeout):
		code, grpcCode, flag = http.StatusGatewayTimeout, 4, streaminfo.UpstreamRequestTimeout // DEADLINE_EXCEEDED
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away: nobody reads an answer; Envoy logs code 0 and DC.
		if rec, ok := w.(*recorder); ok {
			rec.info.Flags |= streaminfo.DownstreamConnectionTermination
		}
		return
	default:
		// The upstream reset or closed the stream before answering.
		flag = streaminfo.UpstreamConnectionTermination
		f.log.Debug("upstream error", "path", r.URL.Path, "err", err)
	}
	if rec, ok := w.(*recorder); ok {
		rec.info.Flags |= flag
	}
	f.log.Debug("request failed", "host", r.Host, "path", r.URL.Path, "status", code, "flags", flag.String(), "error", err)
	msg := err.Error()
	if isGRPC(r) {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcCode))
		h.Set("Grpc-Message", msg)
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
//
// An HTTP/2 answer that ended with its headers (no body follows, ContentLength 0) is
// kept trailers-only: the proxy then writes it in one HEADERS frame too, so the next
// hop can still read the status before any body (Envoy's gRPC retry conditions do).
func trailersOnlyToTrailers(resp *http.Response) error {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") || resp.Header.Get("Grpc-Status") == "" {
		return nil
	}
	if resp.ProtoMajor == 2 && resp.ContentLength == 0 {
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

// recorder remembers the response status and size for telemetry; Unwrap keeps Flush
// and the other ResponseController features of the underlying writer reachable.
type recorder struct {
	http.ResponseWriter
	info  *streaminfo.Info
	code  int
	bytes int64
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
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
