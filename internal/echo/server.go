package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Serve answers HTTP/1.1, h2c and gRPC on ln until ctx is cancelled, then stops
// gracefully: health turns NOT_SERVING, new connections are refused, and in-flight
// requests get Options.ShutdownGrace to finish before their connections are closed.
func Serve(ctx context.Context, ln net.Listener, opts Options) error {
	opts = opts.withDefaults()
	c := newCaller(opts)

	// gRPC runs inside the HTTP/2 server (grpc.Server.ServeHTTP) so that one port
	// serves every protocol, as a mesh workload's single container port does.
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus(GRPCService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	led := newLedger() // shared: HTTP and gRPC requests of one id count together
	gs.RegisterService(echoServiceDesc(), &grpcEcho{opts: opts, caller: c, ledger: led})

	plain := &httpHandler{opts: opts, caller: c, log: opts.Logger, ledger: led}
	ws := webSocketHandler(opts.Identity)
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			if r, failed := led.failGRPC(w, r); !failed {
				gs.ServeHTTP(w, r)
			}
			return
		}
		if isWebSocket(r) {
			ws.ServeHTTP(w, r)
			return
		}
		plain.ServeHTTP(w, r)
	})

	// net/http serves h2c with prior knowledge itself (Protocols below); it does not
	// implement the HTTP/1.1 "Upgrade: h2c" dance, which the deprecated x/net h2c
	// handler still does, so it is kept only for that case.
	upgrade := h2c.NewHandler(dispatch, &http2.Server{}) //nolint:staticcheck // see above

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)

	// Handlers run on hardCtx, cancelled only when the grace period is over.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	tl := &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}}
	srv := &http.Server{
		Handler:           upgrade,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return hardCtx },
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tl) }()

	select {
	case err := <-errc:
		gs.Stop()
		return fmt.Errorf("echo: serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	graceCtx, cancel := context.WithTimeout(context.Background(), opts.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		opts.Logger.Warn("echo: shutdown", "err", err)
	}
	// Connections upgraded to h2c were hijacked: Shutdown does not see them.
	tl.waitIdle(graceCtx)
	hardCancel()
	tl.closeAll()
	gs.Stop()
	<-errc
	return nil
}

// trackingListener remembers every accepted connection until it is closed, so that
// the end of the grace period can close even hijacked ones.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	once sync.Once
	l    *trackingListener
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *trackingListener) waitIdle(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for l.open() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
