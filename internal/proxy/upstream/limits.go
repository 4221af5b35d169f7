package upstream

import (
	"context"
	"errors"
	"sync"
)

// ErrOverflow is a circuit breaker refusing a request, connection or retry (Envoy's
// UO response flag).
var ErrOverflow = errors.New("upstream overflow: circuit breaker open")

// limits counts what the circuit breakers bound. It is shared across config swaps, so
// a new threshold applies to what is already in use.
type limits struct {
	mu          sync.Mutex
	requests    int64
	connections int64 // HTTP/1 connections in use, TCP connections
	pending     int64
	retries     int64
	waiters     []chan struct{} // pending requests, first come first served
}

// AdmitRequest reserves room for one request, as Envoy's router and connection pool
// do: max_requests bounds requests in flight; an HTTP/1.1 request also needs a
// connection of its own, bounded by max_connections, and waits for one as a pending
// request when max_pending_requests leaves room (else overflow). HTTP/2 requests share
// connections and are bounded by max_requests only. release must be called once the
// request ends.
func (c *Cluster) AdmitRequest(ctx context.Context, http2 bool) (release func(), err error) {
	th := c.Policy.Limits()
	l := &c.state.limits
	l.mu.Lock()
	if l.requests >= int64(th.MaxRequests) {
		l.mu.Unlock()
		return nil, ErrOverflow
	}
	l.requests++
	if http2 {
		l.mu.Unlock()
		return l.releaseRequest(false), nil
	}
	if l.connections < int64(th.MaxConnections) {
		l.connections++
		l.mu.Unlock()
		return l.releaseRequest(true), nil
	}
	if l.pending >= int64(th.MaxPendingRequests) {
		l.requests--
		l.mu.Unlock()
		return nil, ErrOverflow
	}
	l.pending++
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		// The releaser handed its connection slot over.
		return l.releaseRequest(true), nil
	case <-ctx.Done():
		l.mu.Lock()
		handed := true
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				l.pending--
				handed = false
				break
			}
		}
		l.requests--
		l.mu.Unlock()
		if handed {
			l.releaseConnection()
		}
		return nil, ctx.Err()
	}
}

func (l *limits) releaseRequest(conn bool) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.requests--
			l.mu.Unlock()
			if conn {
				l.releaseConnection()
			}
		})
	}
}

// releaseConnection frees a connection slot, or hands it to the oldest pending request.
func (l *limits) releaseConnection() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.pending--
		close(ch)
		return
	}
	l.connections--
}

// AdmitConnection reserves a TCP connection under max_connections (no queue: Envoy's
// tcp_proxy closes the downstream connection on overflow).
func (c *Cluster) AdmitConnection() (release func(), err error) {
	l := &c.state.limits
	l.mu.Lock()
	if l.connections >= int64(c.Policy.Limits().MaxConnections) {
		l.mu.Unlock()
		return nil, ErrOverflow
	}
	l.connections++
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(l.releaseConnection) }, nil
}

// AdmitRetry reserves one retry under max_retries; callers that retry must ask before
// each retry and release when it ends. false means the retry budget is spent (UO).
func (c *Cluster) AdmitRetry() (release func(), ok bool) {
	l := &c.state.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retries >= int64(c.Policy.Limits().MaxRetries) {
		return nil, false
	}
	l.retries++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.retries--
			l.mu.Unlock()
		})
	}, true
}
