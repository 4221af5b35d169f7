// Package accesslog writes one JSON line per finished request or connection (the
// streaminfo.Record shape: Envoy's field names).
//
// The request goroutine formats its line (no allocation: streaminfo.AppendJSON) into
// the pending batch under a mutex; one goroutine writes the batch out at most every
// FlushInterval, as Envoy flushes its access logs on an interval. So a request costs
// no goroutine wake-up and no syscall of its own (at 1,000 RPS: ten writes a second
// instead of a thousand), and the Info is not kept alive after the request. When the
// pending batch is full the line is dropped and counted rather than slowing traffic.
package accesslog

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
)

const (
	// FlushInterval is the longest a line waits before it is written.
	FlushInterval = 100 * time.Millisecond
	// MaxPending is how many bytes of lines may wait for the writer (about 1,500 lines
	// of 700 bytes: far above one interval's worth at the rates a sidecar serves).
	MaxPending = 1 << 20
)

// Logger is an access log sink.
type Logger struct {
	proxy      string
	maxPending int

	mu      sync.Mutex
	pending []byte // complete lines waiting for the writer
	closed  bool

	wake    chan struct{} // capacity 1: the batch went from empty to not empty
	dropped atomic.Int64
	done    chan struct{}
}

var _ telemetry.Sink = (*Logger)(nil)

// Options configure a Logger.
type Options struct {
	// Proxy is the node id written in every line.
	Proxy  string
	Logger *slog.Logger
	// Registry, when set, gets skein_access_log_dropped_total.
	Registry prometheus.Registerer
	// MaxPending overrides MaxPending (tests).
	MaxPending int
}

// Start runs the writer until ctx is done; then it writes what is pending and closes
// w. Wait returns once that is finished.
func Start(ctx context.Context, w io.WriteCloser, opts Options) *Logger {
	l := &Logger{proxy: opts.Proxy, maxPending: opts.MaxPending, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if l.maxPending <= 0 {
		l.maxPending = MaxPending
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry != nil {
		_ = opts.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skein_access_log_dropped_total", Help: "Access log lines dropped because the writer fell behind.",
		}, func() float64 { return float64(l.dropped.Load()) }))
	}
	go l.run(ctx, w, opts.Logger)
	return l
}

// Log formats one line into the pending batch; it never blocks on I/O.
func (l *Logger) Log(info *streaminfo.Info) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	n := len(l.pending)
	if n >= l.maxPending {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	l.pending = info.AppendJSON(l.pending, l.proxy)
	l.pending = append(l.pending, '\n')
	l.mu.Unlock()
	if n == 0 {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped counts lines dropped because the writer fell behind.
func (l *Logger) Dropped() int64 { return l.dropped.Load() }

// Wait blocks until the writer has stopped.
func (l *Logger) Wait() { <-l.done }

// take swaps the pending batch for spare (emptied) and returns the batch.
func (l *Logger) take(spare []byte, closing bool) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.pending
	l.pending = spare[:0]
	l.closed = closing
	return out
}

func (l *Logger) run(ctx context.Context, w io.WriteCloser, log *slog.Logger) {
	defer close(l.done)
	var spare []byte
	write := func(b []byte) {
		if len(b) == 0 {
			return
		}
		if _, err := w.Write(b); err != nil {
			log.Warn("access log write failed", "error", err)
		}
	}
	timer := time.NewTimer(FlushInterval)
	timer.Stop()
	for {
		select {
		case <-l.wake:
			// Let the interval's lines gather, then write them in one go.
			timer.Reset(FlushInterval)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
			batch := l.take(spare, false)
			write(batch)
			spare = shrink(batch)
		case <-ctx.Done():
			write(l.take(nil, true))
			_ = w.Close()
			return
		}
	}
}

// shrink keeps a batch's buffer for reuse (at 1,000 RPS a batch is ~70 KB; growing a
// fresh one every interval cost ~3 KB of allocation per request) unless a burst made
// it larger than keepBatch: an idle sidecar should not hold a megabyte it needed once.
func shrink(b []byte) []byte {
	if cap(b) > keepBatch {
		return nil
	}
	return b
}

// keepBatch is the largest batch buffer kept between intervals (two are in use).
const keepBatch = 256 << 10
