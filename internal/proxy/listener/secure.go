package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/peer"
)

// PrepareFunc readies one accepted connection of a secure listener before its filters
// run: TLS inspection, filter chain choice, TLS termination. It returns the connection
// to serve (a *tls.Conn after termination) and what is known about the peer, or an
// error, in which case it has closed conn.
type PrepareFunc func(ctx context.Context, listener string, conn net.Conn) (net.Conn, *peer.Info, error)

// startSecure runs a listener whose connections go through Options.Prepare, each on
// its own goroutine so a slow handshake never blocks accepting. HTTP listeners hand
// the prepared connections to their http.Server through a channel listener; a
// *tls.Conn arrives there with its handshake done, so requests see r.TLS.
func (m *Manager) startSecure(s Spec, ln net.Listener, b *bound, log *slog.Logger) {
	ctx, cancel := context.WithCancel(m.ctx)
	b.cancel = cancel
	if s.HTTP {
		cl := newChanListener(ln)
		b.server = m.httpServer(s, log)
		b.server.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if info := cl.take(c); info != nil {
				return peer.NewContext(ctx, info)
			}
			return ctx
		}
		m.wg.Go(func() {
			if err := b.server.Serve(cl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http listener stopped", "error", err)
			}
		})
		m.wg.Go(func() {
			m.acceptPrepared(ctx, ln, s.Name, log, func(c net.Conn, info *peer.Info) { cl.deliver(c, info) })
		})
		return
	}
	m.wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		m.acceptPrepared(ctx, ln, s.Name, log, func(c net.Conn, info *peer.Info) {
			conns.Go(func() { m.opts.ServeTCP(peer.NewContext(ctx, info), c, s.Name) })
		})
	})
}

// acceptPrepared accepts until ln closes or ctx ends, preparing each connection on its
// own goroutine and passing the ready ones to serve.
func (m *Manager) acceptPrepared(ctx context.Context, ln net.Listener, name string, log *slog.Logger, serve func(net.Conn, *peer.Info)) {
	var pending sync.WaitGroup
	defer pending.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Error("accept failed", "error", err)
			}
			return
		}
		pending.Go(func() {
			c, info, err := m.opts.Prepare(ctx, name, conn)
			if err != nil {
				log.Debug("connection refused", "remote", conn.RemoteAddr().String(), "error", err)
				return
			}
			serve(c, info)
		})
	}
}

// chanListener is the net.Listener an http.Server serves: connections arrive already
// prepared, with their peer info kept until the server asks for it (ConnContext).
type chanListener struct {
	real  net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	info  sync.Map // net.Conn -> *peer.Info
}

func newChanListener(real net.Listener) *chanListener {
	return &chanListener{real: real, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn, info *peer.Info) {
	l.info.Store(c, info)
	select {
	case l.conns <- c:
	case <-l.done:
		l.info.Delete(c)
		c.Close()
	}
}

func (l *chanListener) take(c net.Conn) *peer.Info {
	v, ok := l.info.LoadAndDelete(c)
	if !ok {
		return nil
	}
	return v.(*peer.Info)
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the server's accept loop and the real listener.
func (l *chanListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.real.Close()
	})
	return err
}

func (l *chanListener) Addr() net.Addr { return l.real.Addr() }

// plainInfo is the peer info of a connection accepted without TLS.
func plainInfo(c net.Conn) *peer.Info { return &peer.Info{RemoteAddr: c.RemoteAddr().String()} }

// inspectTimeout bounds the wait for a client's first byte on a listener with the TLS
// inspector; a client that sends nothing in time is treated as plaintext (so
// server-first protocols still work where plaintext is allowed).
const inspectTimeout = 5 * time.Second
