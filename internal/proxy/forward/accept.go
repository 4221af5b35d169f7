package forward

import (
	"context"
	"errors"
	"fmt"
	"net"

	"skein.dev/skein/internal/proxy/peer"
)

// Errors of Terminate, each closing the connection.
var (
	ErrNoFilterChain = errors.New("no filter chain matches the connection")
	ErrNoListener    = errors.New("listener not in the current config")
)

// Terminate ends TLS on a connection the listener gave to one of its filter chains, as
// the chain's transport socket says: a chain without one serves the connection as it
// is; a chain whose TLS context could not be built refuses it. It returns the
// connection the chain's filter serves (a *tls.Conn after termination) and what is
// known about the peer; on error conn is closed.
func (l *Listener) Terminate(ctx context.Context, chain string, conn net.Conn, refused func(reason string)) (net.Conn, *peer.Info, error) {
	ch := l.Chain(chain)
	if ch == nil {
		refused("no_filter_chain")
		conn.Close()
		return nil, nil, fmt.Errorf("%w (%s)", ErrNoFilterChain, chain)
	}
	if ch.Err != nil {
		refused("tls_config")
		conn.Close()
		return nil, nil, ch.Err
	}
	if ch.TLS == nil {
		return conn, &peer.Info{RemoteAddr: conn.RemoteAddr().String()}, nil
	}
	tc, info, err := ch.TLS.Handshake(ctx, conn)
	if err != nil {
		refused("tls_handshake")
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, info, nil
}
