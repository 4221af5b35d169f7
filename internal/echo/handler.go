package echo

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxSizeBytes bounds /size answers so a typo cannot exhaust memory or the link.
const maxSizeBytes = 64 << 20

// httpHandler answers the plain HTTP (HTTP/1.1 and h2c) requests.
type httpHandler struct {
	opts   Options
	caller *caller
	log    *slog.Logger
	ledger *ledger
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := h.serve(w, r)
	h.log.Debug("request", "method", r.Method, "path", r.URL.RequestURI(), "proto", r.Proto,
		"status", status, "duration", time.Since(start))
}

func (h *httpHandler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok\n")
		return http.StatusOK
	}
	if r.URL.Path == SeenPath {
		return writeJSON(w, http.StatusOK, h.ledger.lookup(r.URL.Query().Get("id")))
	}
	// Drain the body so keep-alive connections can be reused.
	io.Copy(io.Discard, io.LimitReader(r.Body, maxUpstreamBody))
	attempt := h.ledger.record(r.Header.Get("X-Request-Id"), r.Host, r.URL.RequestURI())
	if fail, delay, err := failure(r.Header, attempt); err != nil {
		return writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	} else if fail != 0 {
		if !sleep(r.Context(), delay) {
			return 0
		}
		return writeJSON(w, fail, map[string]any{"workload": h.opts.Identity.Workload, "attempt": attempt, "failed": true})
	}

	b, err := resolveBehaviour(behaviour{latency: h.opts.Latency, status: h.opts.Status}, r.Header, r.URL.Query())
	if err != nil {
		return writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
	if !sleep(r.Context(), b.latency) {
		return 0 // client went away
	}
	if r.URL.Path == "/size" {
		return h.serveSize(w, r, b)
	}

	resp := h.response(r)
	resp.Attempt = attempt
	resp.Upstreams = h.caller.call(r.Context(), r.Header.Get)
	status := b.status
	if status == 0 {
		status = http.StatusOK
		for _, u := range resp.Upstreams {
			if u.Failed() {
				// A failing dependency fails this hop too, so faults injected deep in a
				// call chain show up in every service's golden signals.
				status = http.StatusBadGateway
			}
		}
	}
	return writeJSON(w, status, resp)
}

func (h *httpHandler) serveSize(w http.ResponseWriter, r *http.Request, b behaviour) int {
	n, err := strconv.Atoi(r.URL.Query().Get("bytes"))
	if err != nil || n < 0 || n > maxSizeBytes {
		return writeJSON(w, http.StatusBadRequest,
			map[string]string{"error": "bytes must be an integer in 0.." + strconv.Itoa(maxSizeBytes)})
	}
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(status)
	chunk := make([]byte, min(n, 32<<10))
	for i := range chunk {
		chunk[i] = 'x'
	}
	for n > 0 {
		k, err := w.Write(chunk[:min(n, len(chunk))])
		if err != nil {
			break
		}
		n -= k
	}
	return status
}

func (h *httpHandler) response(r *http.Request) Response {
	resp := Response{
		Workload:   h.opts.Identity.Workload,
		Namespace:  h.opts.Identity.Namespace,
		Replica:    h.opts.Identity.Replica,
		Method:     r.Method,
		Path:       r.URL.RequestURI(),
		Host:       r.Host,
		Proto:      r.Proto,
		RemoteAddr: r.RemoteAddr,
		Headers:    make(map[string]string, len(r.Header)),
		Env:        h.opts.Env,
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		resp.LocalAddr = a.String()
	}
	for k, v := range r.Header {
		if len(v) > 0 {
			resp.Headers[strings.ToLower(k)] = v[0]
		}
	}
	return resp
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
	return status
}
