package forward

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/filter/jwtauthn"
	"skein.dev/skein/internal/proxy/filter/rbac"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/stats"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/proxy/telemetry"
)

// FilterDeps is what compiled filters need from the running proxy.
type FilterDeps struct {
	Logger *slog.Logger
	RBAC   *stats.RBAC
	JWKS   *jwtauthn.Cache
}

func (d FilterDeps) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// compileHTTPFilters builds a filter chain's HTTP filters (router excluded).
func compileHTTPFilters(listener string, fs []resource.HTTPFilter, deps FilterDeps) []filter.HTTP {
	var out []filter.HTTP
	for _, f := range fs {
		switch {
		case f.RBAC != nil:
			out = append(out, rbac.NewHTTPFilter(f.RBAC, listener, deps.logger(), deps.RBAC))
		case f.JWT != nil:
			out = append(out, jwtauthn.New(f.JWT, deps.JWKS, deps.logger(), nil))
		}
	}
	return out
}

// compileNetworkFilters builds a filter chain's network filters (terminal one excluded).
func compileNetworkFilters(listener string, fs []resource.NetworkFilter, deps FilterDeps) []filter.Network {
	var out []filter.Network
	for _, f := range fs {
		if f.RBAC != nil {
			out = append(out, rbac.NewNetworkFilter(f.RBAC, listener, deps.logger(), deps.RBAC))
		}
	}
	return out
}

// runHTTPFilters runs the chain; it returns the request to route, or false after
// answering with a filter's local reply.
func runHTTPFilters(listener string, l *Chain, w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if len(l.HTTPFilters) == 0 && len(l.NetworkFilters) == 0 {
		return r, true
	}
	conn := filter.ConnOfRequest(r)
	// Network filters of an HTTP listener decide once per request here (the HTTP
	// server owns the accept loop); the decision only depends on the connection.
	for _, nf := range l.NetworkFilters {
		if !nf.OnConnection(&conn) {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return nil, false
				}
			}
			panic(http.ErrAbortHandler)
		}
	}
	req := &filter.Request{HTTP: r, Conn: conn, Listener: listener, Metadata: filter.Metadata{}}
	for ns, kv := range conn.Metadata {
		for k, v := range kv {
			req.Metadata.Set(ns, k, v)
		}
	}
	rec, _ := w.(*recorder)
	for _, f := range l.HTTPFilters {
		if reply := f.DecodeHTTP(req); reply != nil {
			if rec != nil {
				rec.info.AuditPolicy = rbac.AuditPolicy(req.Metadata)
				rec.info.ResponseCodeDetails = reply.Details
				if rec.info.Direction == streaminfo.Inbound && rec.info.UpstreamPeer != nil {
					// Metadata exchange runs before authorization (as Istio's filter order
					// has it): the caller learns who refused it.
					w.Header()[telemetry.PeerHeader] = []string{telemetry.EncodePeer(rec.info.UpstreamPeer)}
				}
			}
			writeLocalReply(w, r, reply)
			return nil, false
		}
	}
	if rec != nil {
		rec.info.AuditPolicy = rbac.AuditPolicy(req.Metadata)
	}
	return r, true
}

// writeLocalReply answers as Envoy's local replies do: the status and a text body, or
// for gRPC callers a trailers-only response with the mapped grpc-status.
func writeLocalReply(w http.ResponseWriter, r *http.Request, reply *filter.LocalReply) {
	h := w.Header()
	for k, v := range reply.Header {
		h[k] = v
	}
	if isGRPC(r) {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(reply.GRPCStatus))
		h.Set("Grpc-Message", reply.Body)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(reply.Body)))
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Body)
}

// allowConnection runs a TCP chain's network filters on an accepted connection,
// recording an AUDIT match or the reason of a denial in info.
func allowConnection(ctx context.Context, l *Chain, conn net.Conn, info *streaminfo.Info) bool {
	if len(l.NetworkFilters) == 0 {
		return true
	}
	c := filter.ConnOf(ctx, conn)
	defer func() { info.AuditPolicy = rbac.AuditPolicy(c.Metadata) }()
	for _, nf := range l.NetworkFilters {
		if !nf.OnConnection(&c) {
			if rf, ok := nf.(*rbac.NetworkFilter); ok {
				info.ResponseCodeDetails = rf.DeniedDetails(&c)
			}
			return false
		}
	}
	return true
}
