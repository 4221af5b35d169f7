// Package accesslog writes one JSON line per finished request or connection (the
// streaminfo.Record shape: Envoy's field names). The request goroutine only queues the
// Info; one goroutine formats into a reused buffer and writes through a buffered
// writer, flushing whenever the queue runs empty. When the queue is full the line is
// dropped and counted rather than slowing traffic down.
package accesslog

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
)

// QueueSize is how many finished requests may wait for the writer.
const QueueSize = 4096

// Logger is an access log sink.
type Logger struct {
	proxy   string
	queue   chan *streaminfo.Info
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
}

// Start runs the writer until ctx is done; then it writes what is queued, flushes and
// closes w. Wait returns once that is finished.
func Start(ctx context.Context, w io.WriteCloser, opts Options) *Logger {
	l := &Logger{proxy: opts.Proxy, queue: make(chan *streaminfo.Info, QueueSize), done: make(chan struct{})}
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

// Log queues one line; it never blocks.
func (l *Logger) Log(info *streaminfo.Info) {
	select {
	case l.queue <- info:
	default:
		l.dropped.Add(1)
	}
}

// Dropped counts lines dropped because the queue was full.
func (l *Logger) Dropped() int64 { return l.dropped.Load() }

// Wait blocks until the writer has stopped.
func (l *Logger) Wait() { <-l.done }

func (l *Logger) run(ctx context.Context, w io.WriteCloser, log *slog.Logger) {
	defer close(l.done)
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 1024)
	write := func(info *streaminfo.Info) {
		buf = info.AppendJSON(buf[:0], l.proxy)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			log.Warn("access log write failed", "error", err)
		}
	}
	defer func() {
		if err := bw.Flush(); err != nil {
			log.Warn("access log flush failed", "error", err)
		}
		_ = w.Close()
	}()
	for {
		select {
		case info := <-l.queue:
			write(info)
			if len(l.queue) == 0 {
				_ = bw.Flush()
			}
		case <-ctx.Done():
			for {
				select {
				case info := <-l.queue:
					write(info)
				default:
					return
				}
			}
		}
	}
}
