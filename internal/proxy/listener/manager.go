// Package listener binds the proxy's listeners and runs their accept loops. Apply takes
// the full desired set: new listeners are bound, removed ones closed, and unchanged ones
// (same name, address and kind) stay open so their connections are not dropped. Handlers
// look up the current config by listener name, so they need no rebinding on RDS/CDS/EDS
// changes.
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

	"skein.dev/skein/internal/proxy/peer"
	"skein.dev/skein/internal/proxy/resource"
)

// Spec is one listener to bind.
type Spec struct {
	Name    string
	Address string
	HTTP    bool
	Codec   resource.Codec
	// Secure listeners pass every connection through Options.Prepare (TLS inspection,
	// filter chain choice, TLS termination) before serving it.
	Secure bool
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// HTTPHandler returns the handler of an HTTP listener.
	HTTPHandler func(listener string) http.Handler
	// ServeTCP handles one connection of a TCP listener and closes it. ctx carries the
	// connection's *peer.Info.
	ServeTCP func(ctx context.Context, conn net.Conn, listener string)
	// Prepare readies connections of Secure listeners; required if any is.
	Prepare PrepareFunc
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
	server *http.Server       // HTTP listeners
	cancel context.CancelFunc // TCP listeners: stops the accept loop and connections
	addr   string
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
	ln, err := lc.Listen(m.ctx, "tcp", s.Address)
	if err != nil {
		return nil, err
	}
	b := &bound{spec: s, ln: ln, addr: ln.Addr().String()}
	log := m.opts.Logger.With("listener", s.Name, "address", b.addr)
	if s.Secure && m.opts.Prepare != nil {
		m.startSecure(s, ln, b, log)
		log.Info("listener bound", "http", s.HTTP, "secure", true)
		return b, nil
	}
	if s.HTTP {
		b.server = m.httpServer(s, log)
		b.server.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return peer.NewContext(ctx, plainInfo(c))
		}
		m.wg.Go(func() {
			if err := b.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http listener stopped", "error", err)
			}
		})
	} else {
		ctx, cancel := context.WithCancel(m.ctx)
		b.cancel = cancel
		m.wg.Go(func() { m.acceptTCP(ctx, ln, s.Name, log) })
	}
	log.Info("listener bound", "http", s.HTTP)
	return b, nil
}

func (m *Manager) acceptTCP(ctx context.Context, ln net.Listener, name string, log *slog.Logger) {
	var conns sync.WaitGroup
	defer conns.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Error("tcp accept failed", "error", err)
			}
			return
		}
		conns.Go(func() { m.opts.ServeTCP(peer.NewContext(ctx, plainInfo(conn)), conn, name) })
	}
}

// httpServer builds the server of an HTTP listener: HTTP/1.1 and h2c as the codec
// allows, and HTTP/2 over TLS when ALPN negotiates "h2" on a TLS filter chain.
func (m *Manager) httpServer(s Spec, log *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(s.Codec != resource.CodecHTTP2)
	protocols.SetUnencryptedHTTP2(s.Codec != resource.CodecHTTP1)
	protocols.SetHTTP2(s.Codec != resource.CodecHTTP1)
	return &http.Server{
		Handler:           m.opts.HTTPHandler(s.Name),
		Protocols:         protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// stop closes a listener. A removed HTTP listener stops accepting and lets its requests
// finish in the background (drain); on shutdown (wait) the caller waits for them.
func (m *Manager) stop(b *bound, wait bool) {
	m.opts.Logger.Info("listener closing", "listener", b.spec.Name, "address", b.addr)
	if b.server != nil {
		shutdown := func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 5*time.Second)
			defer cancel()
			if err := b.server.Shutdown(ctx); err != nil {
				b.server.Close()
			}
		}
		if wait {
			shutdown()
		} else {
			b.ln.Close()
			m.wg.Go(shutdown)
		}
		return
	}
	if wait {
		b.cancel()
		return
	}
	// A removed TCP listener stops accepting; its open connections live on until the
	// manager's context ends, as Envoy keeps draining connections.
	b.ln.Close()
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
