package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// ServeTCPEcho copies every byte received on a connection back to it, until ctx is
// cancelled. A client's half-close (CloseWrite) is honoured: the rest of its bytes are
// echoed, then the server closes its side, so a client can read to EOF.
func ServeTCPEcho(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	return ServeTCPEchoGreeting(ctx, ln, "", log)
}

// ServeTCPEchoGreeting is ServeTCPEcho for a server-first protocol: it sends greeting
// (when not empty) as soon as a connection is accepted, before reading anything, as an
// SMTP or MySQL server does.
func ServeTCPEchoGreeting(ctx context.Context, ln net.Listener, greeting string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	closeAll := func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
		wg.Wait()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("echo: tcp accept on %s: %w", ln.Addr(), err)
		}
		mu.Lock()
		if ctx.Err() != nil { // raced with stop: it will not see this one
			mu.Unlock()
			conn.Close()
			return nil
		}
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, conn)
				mu.Unlock()
				conn.Close()
			}()
			if greeting != "" {
				if _, err := io.WriteString(conn, greeting); err != nil {
					return
				}
			}
			n, err := io.Copy(conn, conn)
			if err != nil && !errors.Is(err, net.ErrClosed) {
				log.Debug("tcp echo", "remote", conn.RemoteAddr(), "bytes", n, "err", err)
				return
			}
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			log.Debug("tcp echo", "remote", conn.RemoteAddr(), "bytes", n)
		})
	}
}
