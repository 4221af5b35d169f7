package echo

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Header names and the path of the request ledger: tests count the attempts a proxy
// makes (retries, mirror copies) by the x-request-id they share.
const (
	// HeaderFail asks that the first N requests carrying this request's x-request-id
	// fail (with HeaderFailStatus, default 503); later ones answer normally.
	HeaderFail       = "x-echo-fail"
	HeaderFailStatus = "x-echo-fail-status"
	// HeaderFailLatency delays the failing answers only (to exceed a per-try timeout).
	HeaderFailLatency = "x-echo-fail-latency"
	// SeenPath answers how many requests with ?id=<x-request-id> this replica saw and
	// with which Host and path.
	SeenPath = "/echo/seen"
)

// maxLedger bounds the request ids remembered; the oldest are forgotten first.
const maxLedger = 10000

// ledger remembers, per x-request-id, the requests this replica answered.
type ledger struct {
	mu    sync.Mutex
	seen  map[string]*Seen
	order []string
	next  int
}

// Seen is what the ledger knows about one request id.
type Seen struct {
	Count int      `json:"count"`
	Hosts []string `json:"hosts"`
	Paths []string `json:"paths"`
}

func newLedger() *ledger { return &ledger{seen: map[string]*Seen{}, order: make([]string, maxLedger)} }

// record adds a request and returns how many with its id were seen, this one included.
func (l *ledger) record(id, host, path string) int {
	if id == "" {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[id]
	if s == nil {
		if old := l.order[l.next]; old != "" {
			delete(l.seen, old)
		}
		l.order[l.next] = id
		l.next = (l.next + 1) % maxLedger
		s = &Seen{}
		l.seen[id] = s
	}
	s.Count++
	if len(s.Hosts) < 100 {
		s.Hosts = append(s.Hosts, host)
		s.Paths = append(s.Paths, path)
	}
	return s.Count
}

func (l *ledger) lookup(id string) Seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.seen[id]; s != nil {
		return Seen{Count: s.Count, Hosts: append([]string(nil), s.Hosts...), Paths: append([]string(nil), s.Paths...)}
	}
	return Seen{Hosts: []string{}, Paths: []string{}}
}

// failure returns the status (0: none) and delay the attempt-th request of an id gets
// under the x-echo-fail headers.
func failure(h http.Header, attempt int) (int, time.Duration, error) {
	v := h.Get(HeaderFail)
	if v == "" {
		return 0, 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, 0, &BadOverrideError{Field: "fail", Value: v, Err: strconv.ErrSyntax}
	}
	if attempt > n {
		return 0, 0, nil
	}
	status := http.StatusServiceUnavailable
	if s := h.Get(HeaderFailStatus); s != "" {
		if status, err = parseStatus(s); err != nil {
			return 0, 0, err
		}
	}
	var delay time.Duration
	if s := h.Get(HeaderFailLatency); s != "" {
		if delay, err = time.ParseDuration(s); err != nil || delay < 0 {
			return 0, 0, &BadOverrideError{Field: "fail latency", Value: s, Err: strconv.ErrSyntax}
		}
	}
	return status, delay, nil
}

// HeaderFailGRPCStatus is the gRPC status (a code number, default 14 UNAVAILABLE) of a
// gRPC request failed by x-echo-fail.
const HeaderFailGRPCStatus = "x-echo-fail-grpc-status"

// attemptKey carries, in a gRPC request's context, the attempt number failGRPC already
// recorded.
type attemptKey struct{}

// failGRPC answers a gRPC request that x-echo-fail says must fail, with a trailers-only
// response (the status in the only HEADERS frame), as a native gRPC server answers an
// error before any message: grpc.Server.ServeHTTP always sends headers and trailers
// apart, and proxies only read a status they can see before the body (Envoy's gRPC
// retry conditions). It returns the request to serve otherwise.
func (l *ledger) failGRPC(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if r.Header.Get(HeaderFail) == "" {
		return r, false
	}
	attempt := l.record(r.Header.Get("X-Request-Id"), r.Host, r.URL.Path)
	n, err := strconv.Atoi(r.Header.Get(HeaderFail))
	if err != nil || attempt > n {
		return r.WithContext(context.WithValue(r.Context(), attemptKey{}, attempt)), false
	}
	code := "14"
	if c := r.Header.Get(HeaderFailGRPCStatus); c != "" {
		code = c
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", code)
	h.Set("Grpc-Message", "echo: x-echo-fail attempt "+strconv.Itoa(attempt))
	w.WriteHeader(http.StatusOK)
	return r, true
}
