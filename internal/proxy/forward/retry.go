package forward

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/upstream"
)

// errPerTryTimeout ends an attempt whose response headers did not come within the
// retry policy's per_try_timeout; answered 504 UT when it is the last attempt.
var errPerTryTimeout = errors.New("upstream per-try timeout")

// errAttemptAbandoned is what an abandoned attempt's transport reads from the request
// body once a retry has started.
var errAttemptAbandoned = errors.New("request attempt abandoned for a retry")

// maxRetryBody is the most of a request body kept to replay it on a retry (Envoy
// buffers up to its buffer limit for the same reason); beyond it the request is not
// retried.
const maxRetryBody = 1 << 20

// retryVerdict classifies one attempt's outcome under a retry policy.
func retryable(p *resource.RetryPolicy, resp *http.Response, err error, perTry bool) bool {
	if err != nil {
		var ce *ConnectError
		switch {
		case perTry:
			return p.On&(resource.Retry5xx|resource.RetryGatewayError|resource.RetryReset) != 0
		case errors.As(err, &ce):
			return p.On&(resource.Retry5xx|resource.RetryReset|resource.RetryConnectFailure) != 0
		case strings.Contains(err.Error(), "REFUSED_STREAM"):
			return p.On&(resource.Retry5xx|resource.RetryReset|resource.RetryRefusedStream) != 0
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return false // the caller left or the route timeout passed
		}
		return p.On&(resource.Retry5xx|resource.RetryReset) != 0
	}
	code := resp.StatusCode
	switch {
	case p.On&resource.Retry5xx != 0 && code >= 500:
		return true
	case p.On&resource.RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.On&resource.RetryRetriable4xx != 0 && code == 409:
		return true
	case p.On&resource.RetryRetriableStatusCodes != 0 && slices.Contains(p.StatusCodes, code):
		return true
	}
	if v := resp.Header.Get("Grpc-Status"); v != "" {
		// Only a trailers-only answer carries its status in the headers (Envoy too).
		n, _ := strconv.Atoi(v)
		var want resource.RetryOn
		switch n {
		case 1:
			want = resource.RetryGRPCCancelled
		case 4:
			want = resource.RetryGRPCDeadlineExceeded
		case 8:
			want = resource.RetryGRPCResourceExhausted
		case 13:
			want = resource.RetryGRPCInternal
		case 14:
			want = resource.RetryGRPCUnavailable
		}
		return p.On&want != 0
	}
	return false
}

// implicitRetry is the proxy's behaviour for routes without a retry policy: a failed
// connect is tried once more on another endpoint (nothing was sent).
var implicitRetry = &resource.RetryPolicy{On: resource.RetryConnectFailure, NumRetries: 1}

// pickEndpoint picks the next attempt's endpoint; with the previous_hosts predicate it
// re-picks up to HostSelectionAttempts times to avoid endpoints already tried.
func pickEndpoint(c *upstream.Cluster, tried []*upstream.Endpoint, p *resource.RetryPolicy, pick upstream.Request) *upstream.Endpoint {
	if len(tried) > 0 {
		pick.Exclude = tried[len(tried)-1]
	}
	ep := c.Choose(pick) // pick carries the request hash (consistent-hash clusters)
	if !p.PreviousHosts {
		return ep
	}
	for i := 1; i < max(p.HostSelectionAttempts, 1) && ep != nil && slices.Contains(tried, ep); i++ {
		ep = c.Choose(pick)
	}
	return ep
}

// backoff is Envoy's retry back-off: a random wait up to base×2^n, capped at max.
func backoff(p *resource.RetryPolicy, n int) time.Duration {
	base := p.BaseInterval
	if base <= 0 {
		return 0
	}
	limit := base << min(n, 16)
	if p.MaxInterval > 0 && limit > p.MaxInterval {
		limit = p.MaxInterval
	}
	return time.Duration(rand.Int64N(int64(limit) + 1))
}

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// perTryContext bounds an attempt until its response headers arrive; stop reports
// whether the per-try timeout fired.
func perTryContext(ctx context.Context, d time.Duration) (context.Context, func() bool, context.CancelFunc) {
	if d <= 0 {
		// No context of its own: an attempt ends with its response body, and an
		// abandoned attempt's body reads fail (replayBody), so nothing needs cancelling.
		return ctx, noPerTry, noCancel
	}
	c, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d, func() { cancel(errPerTryTimeout) })
	return c, func() bool { return !t.Stop() }, func() { cancel(nil) }
}

func noPerTry() bool { return false }
func noCancel()      {}

// replayBody keeps what was read of a request body (up to a limit) so a retry can send
// it again. Each attempt reads through its own attemptBody; starting a new attempt
// makes the previous one's reads fail, so an abandoned transport cannot steal bytes.
type replayBody struct {
	mu       sync.Mutex
	src      io.ReadCloser
	buf      []byte
	srcErr   error
	overflow bool
	gen      int
	// getBody is replay as a func value, made once per request.
	getBody func() (io.ReadCloser, error)
}

func newReplayBody(src io.ReadCloser) *replayBody {
	b := &replayBody{src: src}
	b.getBody = b.replay
	return b
}

// errNotReplayable: the body was longer than what is kept for a replay.
var errNotReplayable = errors.New("request body too long to send again")

// replay is a request's GetBody: a new attempt's reader, when all that was read so far
// was kept. Transports use it to send a request again on a fresh connection after a
// reused one turned out closed.
func (b *replayBody) replay() (io.ReadCloser, error) {
	if !b.replayable() {
		return nil, errNotReplayable
	}
	return b.attempt(), nil
}

// attempt returns the reader for a new attempt.
func (b *replayBody) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	return &attemptBody{rb: b, gen: b.gen}
}

// replayable reports whether every byte read so far was kept.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

// started reports whether any byte was read.
func (b *replayBody) started() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf) > 0 || b.overflow || b.srcErr != nil
}

type attemptBody struct {
	rb  *replayBody
	gen int
	off int
}

func (a *attemptBody) Read(p []byte) (int, error) {
	b := a.rb
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.gen != b.gen {
		return 0, errAttemptAbandoned
	}
	if !b.overflow && a.off < len(b.buf) {
		n := copy(p, b.buf[a.off:])
		a.off += n
		return n, nil
	}
	if b.srcErr != nil {
		return 0, b.srcErr
	}
	n, err := b.src.Read(p)
	if n > 0 && !b.overflow {
		if len(b.buf)+n > maxRetryBody {
			b.overflow, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
			a.off += n
		}
	}
	if err != nil {
		b.srcErr = err
	}
	return n, err
}

// Close does nothing: the server closes the real body when the handler returns.
func (a *attemptBody) Close() error { return nil }
