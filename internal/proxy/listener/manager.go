// Package listener binds the proxy's listeners and runs their accept loops. Apply takes
// the full desired set: new listeners are bound, removed ones closed, and unchanged ones
// (same name, address and kind) stay open so their connections are not dropped.
//
// Every accepted TCP connection goes, on its own goroutine, through the listener's
// current listener filters (original_dst, tls_inspector, http_inspector), filter chain
// match and the chain's TLS termination, looked up at accept time, so RDS/CDS/EDS and
// chain changes need no rebinding. A connection whose chain has an HTTP connection
// manager is then handed to that chain's HTTP server (one per listener and chain,
// created on first use; a *tls.Conn arrives with its handshake done, so requests see
// r.TLS); a tcp_proxy chain gets ServeTCP. The connection's *peer.Info and its
// *inspect.Conn (restored destination) travel in the context. UDP listeners serve DNS,
// over UDP and over TCP on the same address.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"skein.dev/skein/internal/proxy/dns"
	"skein.dev/skein/internal/proxy/filterchain"
	"skein.dev/skein/internal/proxy/inspect"
	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
)

// Spec is one listener to bind.
type Spec struct {
	Name    string
	Address string
	// UDP listeners serve DNS.
	UDP bool
}

// Chain is what the manager needs to know about a selected filter chain.
type Chain struct {
	Name  string
	HTTP  bool
	Codec resource.Codec
}

// Listener is the current compiled form of a bound listener.
type Listener interface {
	// ListenerFilters returns the listener filters to run on a new connection.
	ListenerFilters() resource.ListenerFilters
	// SelectChain picks the filter chain; false closes the connection.
	SelectChain(ci filterchain.ConnInfo) (Chain, bool)
	// Terminate ends TLS as the chain says and returns the connection its filter
	// serves and the peer's info; on error it has closed conn and called refused.
	Terminate(ctx context.Context, chain string, conn net.Conn, refused func(reason string)) (net.Conn, *peer.Info, error)
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Lookup returns the listener's current compiled form; nil closes the connection.
	Lookup func(listener string) Listener
	// HTTPHandler returns the handler of an HTTP filter chain.
	HTTPHandler func(listener, chain string) http.Handler
	// ServeTCP handles one connection of a tcp_proxy filter chain and closes it. ctx
	// carries the connection's *peer.Info.
	ServeTCP func(ctx context.Context, conn net.Conn, listener, chain string)
	// Refused, optional, counts connections closed before any filter (by reason).
	Refused func(listener, reason string)
	// DNSHandler returns the handler of a UDP (DNS) listener.
	DNSHandler func(listener string) mdns.Handler
}

// Manager owns the bound listeners. Apply and Close must not be called concurrently.
type Manager struct {
	opts   Options
	ctx    context.Context
	active map[string]*bound
	wg     sync.WaitGroup
}

type bound struct {
	spec   Spec
	ln     net.Listener
	pc     net.PacketConn
	dns    *dns.Server
	cancel context.CancelFunc // stops the accept loop and TCP connections
	addr   string

	mu      sync.Mutex
	servers map[Chain]*chainServer // HTTP servers by chain
	closed  bool
}

// chainServer is one filter chain's HTTP server, fed connections through a channel.
type chainServer struct {
	srv *http.Server
	ln  *chanListener
}

// NewManager returns a Manager whose TCP connections end when ctx is done.
func NewManager(ctx context.Context, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts, ctx: ctx, active: map[string]*bound{}}
}

// Apply makes the bound listeners match specs. Bind failures are returned joined; the
// other listeners are applied regardless.
func (m *Manager) Apply(specs []Spec) error {
	want := make(map[string]Spec, len(specs))
	for _, s := range specs {
		want[s.Name] = s
	}
	for name, b := range m.active {
		if s, ok := want[name]; !ok || s != b.spec {
			m.stop(b, false)
			delete(m.active, name)
		}
	}
	var errs []error
	for _, s := range specs {
		if _, ok := m.active[s.Name]; ok {
			continue
		}
		b, err := m.start(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: %w", s.Name, err))
			continue
		}
		m.active[s.Name] = b
	}
	return errors.Join(errs...)
}

// Addresses returns the bound address of every listener, by name.
func (m *Manager) Addresses() map[string]string {
	out := make(map[string]string, len(m.active))
	for name, b := range m.active {
		out[name] = b.addr
	}
	return out
}

func (m *Manager) start(s Spec) (*bound, error) {
	var lc net.ListenConfig
	if s.UDP {
		return m.startDNS(s)
	}
	ln, err := lc.Listen(m.ctx, "tcp", s.Address)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	b := &bound{spec: s, ln: ln, addr: ln.Addr().String(), cancel: cancel, servers: map[Chain]*chainServer{}}
	log := m.opts.Logger.With("listener", s.Name, "address", b.addr)
	m.wg.Go(func() { m.accept(ctx, b, log) })
	log.Info("listener bound")
	return b, nil
}

// startDNS binds UDP and, on the same address, TCP (best effort: DNS over TCP is only
// needed for answers too large for UDP).
func (m *Manager) startDNS(s Spec) (*bound, error) {
	pc, err := net.ListenPacket("udp", s.Address)
	if err != nil {
		return nil, err
	}
	log := m.opts.Logger.With("listener", s.Name, "address", pc.LocalAddr().String())
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		log.Warn("dns over tcp not available", "error", err)
		ln = nil
	}
	var h mdns.Handler = mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		resp := new(mdns.Msg)
		resp.SetRcode(r, mdns.RcodeRefused)
		_ = w.WriteMsg(resp)
	})
	if m.opts.DNSHandler != nil {
		h = m.opts.DNSHandler(s.Name)
	}
	b := &bound{spec: s, pc: pc, ln: ln, addr: pc.LocalAddr().String(), cancel: func() {}}
	b.dns = dns.Serve(pc, ln, h, log)
	log.Info("dns listener bound", "tcp", ln != nil)
	return b, nil
}

func (m *Manager) accept(ctx context.Context, b *bound, log *slog.Logger) {
	var conns sync.WaitGroup
	defer conns.Wait()
	stop := context.AfterFunc(ctx, func() { b.ln.Close() })
	defer stop()
	for {
		conn, err := b.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Error("tcp accept failed", "error", err)
			}
			return
		}
		conns.Go(func() { m.handle(ctx, b, conn, log) })
	}
}

// handle runs the listener filters, picks the filter chain and hands the connection
// to it.
func (m *Manager) handle(ctx context.Context, b *bound, conn net.Conn, log *slog.Logger) {
	l := m.opts.Lookup(b.spec.Name)
	if l == nil {
		conn.Close()
		return
	}
	c := inspect.Wrap(conn)
	f := l.ListenerFilters()
	if f.OriginalDst {
		if err := inspect.RestoreOriginalDst(c); err != nil {
			log.Warn("original destination unknown; closing", "peer", conn.RemoteAddr(), "error", err)
			conn.Close()
			return
		}
	}
	port := int(c.Dst().Port())
	res, err := inspect.Inspect(c, inspect.Options{
		TLS:     f.TLSInspector != nil && !f.TLSInspector.Off(port),
		HTTP:    f.HTTPInspector != nil && !f.HTTPInspector.Off(port),
		Timeout: f.Timeout,
	})
	switch {
	case errors.Is(err, inspect.ErrTimeout) && f.ContinueOnTimeout:
		// Nothing detected in time: handled as opaque TCP (server-first protocols).
	case err != nil:
		log.Debug("listener filters failed; closing", "peer", conn.RemoteAddr(), "error", err)
		conn.Close()
		return
	}
	ci := filterchain.ConnInfo{Dst: c.Dst(), ServerName: res.ServerName, TransportProtocol: res.TransportProtocol, ApplicationProtocols: res.ApplicationProtocols}
	refused := func(reason string) {
		if m.opts.Refused != nil {
			m.opts.Refused(b.spec.Name, reason)
		}
	}
	chain, ok := l.SelectChain(ci)
	if !ok {
		refused("no_filter_chain")
		log.Debug("no filter chain matches; closing", "peer", conn.RemoteAddr(), "destination", ci.Dst, "transport", ci.TransportProtocol, "protocols", ci.ApplicationProtocols)
		conn.Close()
		return
	}
	served, info, err := l.Terminate(ctx, chain.Name, c, refused)
	if err != nil {
		log.Debug("connection refused", "peer", conn.RemoteAddr(), "chain", chain.Name, "error", err)
		return
	}
	cctx := inspect.ContextWithConn(peer.NewContext(ctx, info), c)
	if !chain.HTTP {
		m.opts.ServeTCP(cctx, served, b.spec.Name, chain.Name)
		return
	}
	cs := m.chainServer(b, chain, log)
	if cs == nil || !cs.ln.push(ctx, served, connState{info: info, down: c}) {
		served.Close()
	}
}

// connState is what an HTTP chain's requests need to know about their connection.
type connState struct {
	info *peer.Info
	down *inspect.Conn
}

// chainServer returns the HTTP server of a filter chain, starting it on first use.
func (m *Manager) chainServer(b *bound, chain Chain, log *slog.Logger) *chainServer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if cs := b.servers[chain]; cs != nil {
		return cs
	}
	// HTTP/1.1 and h2c as the codec allows, and HTTP/2 over TLS when ALPN negotiated
	// "h2" on a TLS filter chain.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(chain.Codec != resource.CodecHTTP2)
	protocols.SetUnencryptedHTTP2(chain.Codec != resource.CodecHTTP1)
	protocols.SetHTTP2(chain.Codec != resource.CodecHTTP1)
	cs := &chainServer{ln: newChanListener(b.ln.Addr())}
	cs.srv = &http.Server{
		Handler:           m.opts.HTTPHandler(b.spec.Name, chain.Name),
		Protocols:         protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			st, ok := cs.ln.take(c)
			if !ok {
				return ctx
			}
			if st.info != nil {
				ctx = peer.NewContext(ctx, st.info)
			}
			return inspect.ContextWithConn(ctx, st.down)
		},
	}
	b.servers[chain] = cs
	m.wg.Go(func() {
		if err := cs.srv.Serve(cs.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "chain", chain.Name, "error", err)
		}
	})
	return cs
}

// stop closes a listener. A removed listener stops accepting; its HTTP requests finish
// in the background (drain) and its TCP connections live on until the manager's context
// ends, as Envoy drains. On shutdown (wait) the caller waits for HTTP requests and TCP
// connections are closed.
func (m *Manager) stop(b *bound, wait bool) {
	m.opts.Logger.Info("listener closing", "listener", b.spec.Name, "address", b.addr)
	if b.dns != nil {
		b.dns.Shutdown()
		return
	}
	b.mu.Lock()
	b.closed = true
	servers := make([]*chainServer, 0, len(b.servers))
	for _, cs := range b.servers {
		servers = append(servers, cs)
	}
	b.mu.Unlock()
	b.ln.Close()
	shutdown := func() {
		for _, cs := range servers {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 5*time.Second)
			if err := cs.srv.Shutdown(ctx); err != nil {
				cs.srv.Close()
			}
			cs.ln.Close() // also when Serve had not started yet
			cancel()
		}
	}
	if wait {
		shutdown()
		b.cancel()
		return
	}
	m.wg.Go(shutdown)
}

// Close stops every listener, waits for HTTP requests to finish (up to 5 s) and for the
// accept loops to end.
func (m *Manager) Close() {
	for name, b := range m.active {
		m.stop(b, true)
		delete(m.active, name)
	}
	m.wg.Wait()
}

// chanListener is a net.Listener whose connections are pushed by the accept loop,
// each with its state kept until the server asks for it (ConnContext).
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	state sync.Map // net.Conn -> connState
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands a connection to the server; false when the listener is closed.
func (l *chanListener) push(ctx context.Context, c net.Conn, st connState) bool {
	l.state.Store(c, st)
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-ctx.Done():
	}
	l.state.Delete(c)
	return false
}

func (l *chanListener) take(c net.Conn) (connState, bool) {
	v, ok := l.state.LoadAndDelete(c)
	if !ok {
		return connState{}, false
	}
	return v.(connState), true
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
