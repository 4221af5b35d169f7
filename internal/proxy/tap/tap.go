// Package tap streams the proxy's finished requests live, as Linkerd's tap and
// Hubble's observe do: GET /tap on the admin port answers newline-delimited JSON
// (streaminfo.Record), one line per request or connection matching the filters, until
// the client goes away or the limit or duration is reached. With no subscriber the
// cost on the request path is one atomic load.
package tap

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
)

// Filter selects requests. Zero fields match everything.
type Filter struct {
	// PathPrefix matches the start of the request path.
	PathPrefix string
	// Method matches the request method exactly (case-insensitive).
	Method string
	// Status matches a response code ("503") or a class ("5xx").
	Status string
	// Authority matches the start of the request's Host.
	Authority string
	// Direction is "inbound", "outbound" or empty.
	Direction string
}

// ParseFilter reads a Filter from query parameters path, method, status, authority, direction.
func ParseFilter(q map[string][]string) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := Filter{PathPrefix: get("path"), Method: strings.ToUpper(get("method")), Status: strings.ToLower(get("status")), Authority: get("authority"), Direction: get("direction")}
	if s := f.Status; s != "" {
		if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1:] == "xx" {
			// a class
		} else if _, err := strconv.Atoi(s); err != nil {
			return f, fmt.Errorf("status %q: want a code like 503 or a class like 5xx", s)
		}
	}
	if f.Direction != "" && f.Direction != "inbound" && f.Direction != "outbound" {
		return f, fmt.Errorf("direction %q: want inbound or outbound", f.Direction)
	}
	return f, nil
}

// Match reports whether the filter selects info.
func (f *Filter) Match(info *streaminfo.Info) bool {
	if f.PathPrefix != "" && !strings.HasPrefix(info.Path, f.PathPrefix) {
		return false
	}
	if f.Method != "" && info.Method != f.Method {
		return false
	}
	if f.Authority != "" && !strings.HasPrefix(info.Authority, f.Authority) {
		return false
	}
	if f.Direction != "" && info.Direction.String() != f.Direction {
		return false
	}
	if s := f.Status; s != "" {
		code := info.ResponseCode
		if strings.HasSuffix(s, "xx") {
			if code/100 != int(s[0]-'0') {
				return false
			}
		} else if strconv.Itoa(code) != s {
			return false
		}
	}
	return true
}

// Hub fans finished requests out to tap subscribers.
type Hub struct {
	proxy string
	n     atomic.Int32
	mu    sync.Mutex
	subs  map[*subscriber]struct{}
}

var _ telemetry.Sink = (*Hub)(nil)

type subscriber struct {
	filter  Filter
	ch      chan *streaminfo.Info
	dropped atomic.Int64
}

// NewHub returns a Hub whose events name the given proxy.
func NewHub(proxy string) *Hub {
	return &Hub{proxy: proxy, subs: map[*subscriber]struct{}{}}
}

// Log offers info to every matching subscriber without blocking.
func (h *Hub) Log(info *streaminfo.Info) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.filter.Match(info) {
			continue
		}
		select {
		case s.ch <- info:
		default:
			s.dropped.Add(1)
		}
	}
}

func (h *Hub) subscribe(f Filter) *subscriber {
	s := &subscriber{filter: f, ch: make(chan *streaminfo.Info, 1024)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	h.n.Add(1)
	return s
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	h.n.Add(-1)
}

// Subscribers counts the open taps.
func (h *Hub) Subscribers() int { return int(h.n.Load()) }

// ServeHTTP serves GET /tap?path=&method=&status=&authority=&direction=&limit=N&duration=30s.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := ParseFilter(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			http.Error(w, "limit: want a non-negative number", http.StatusBadRequest)
			return
		}
	}
	ctx := r.Context()
	if v := q.Get("duration"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, "duration: want a positive duration like 30s", http.StatusBadRequest)
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	s := h.subscribe(f)
	defer h.unsubscribe(s)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the client knows the tap is open
	buf := make([]byte, 0, 1024)
	for n := 0; limit == 0 || n < limit; n++ {
		select {
		case <-ctx.Done():
			return
		case info := <-s.ch:
			buf = info.AppendJSON(buf[:0], h.proxy)
			buf = append(buf, '\n')
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
