package forward

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// The route actions besides picking a cluster, with Envoy's semantics: CORS and fault
// injection (filters acting on the route's per-filter config), redirects, header edits,
// rewrites and mirroring (the router's).

// chance reports true with probability num/den.
func chance(num, den uint32) bool {
	if num >= den {
		return true
	}
	return num > 0 && rand.Uint32N(den) < num
}

// corsOrigin returns the request's Origin when the policy allows it.
func corsOrigin(c *resource.CORS, r *http.Request) (string, bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "", false
	}
	for _, m := range c.AllowOrigins {
		if m.Match(origin) {
			return origin, true
		}
	}
	return "", false
}

// handleCORS answers a preflight for an allowed origin (true: answered) or returns the
// headers to add to the response of an allowed cross-origin request. Requests from
// origins the policy does not allow, preflights included, go on unchanged, as Envoy's
// CORS filter does.
func handleCORS(w http.ResponseWriter, r *http.Request, c *resource.CORS) (http.Header, bool) {
	origin, ok := corsOrigin(c, r)
	if !ok {
		return nil, false
	}
	h := http.Header{"Access-Control-Allow-Origin": {origin}}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		out := w.Header()
		for k, v := range h {
			out[k] = v
		}
		if c.AllowMethods != "" {
			out.Set("Access-Control-Allow-Methods", c.AllowMethods)
		}
		if c.AllowHeaders != "" {
			out.Set("Access-Control-Allow-Headers", c.AllowHeaders)
		}
		if c.MaxAge != "" {
			out.Set("Access-Control-Max-Age", c.MaxAge)
		}
		w.WriteHeader(http.StatusOK)
		return nil, true
	}
	if c.ExposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
	}
	return h, false
}

// injectFault delays and/or aborts the request as the route's fault config says; it
// returns false when the request was answered (or the caller left during the delay).
func injectFault(ctx context.Context, w http.ResponseWriter, r *http.Request, f *resource.Fault, info *streaminfo.Info) bool {
	if f.HasDelay && chance(f.DelayNumerator, f.DelayDenom) {
		info.Flags |= streaminfo.DelayInjected
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			info.Flags |= streaminfo.DownstreamConnectionTermination
			return false
		}
	}
	if f.HasAbort && chance(f.AbortNumerator, f.AbortDenom) {
		info.Flags |= streaminfo.FaultInjected
		reply := &filter.LocalReply{Status: f.AbortHTTP, Body: "fault filter abort", GRPCStatus: grpcStatusForHTTP(f.AbortHTTP)}
		if f.AbortGRPC >= 0 {
			// A gRPC abort is a trailers-only gRPC answer, whatever the caller is.
			h := w.Header()
			h.Set("Content-Type", "application/grpc")
			h.Set("Grpc-Status", strconv.Itoa(f.AbortGRPC))
			h.Set("Grpc-Message", reply.Body)
			w.WriteHeader(http.StatusOK)
			return false
		}
		writeLocalReply(w, r, reply)
		return false
	}
	return true
}

// grpcStatusForHTTP is Envoy's mapping of an HTTP status to the gRPC status gRPC
// callers get in a local reply.
func grpcStatusForHTTP(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// writeRedirect answers with the route's redirect. Location is built from the request
// (its scheme, Host and path with query) with the redirect's replacements: a new path
// keeps the query unless it has its own; a new port replaces the Host's; a scheme
// change drops a port that is the default of either scheme.
func writeRedirect(w http.ResponseWriter, r *http.Request, rd *resource.Redirect) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host := r.Host
	if rd.Host != "" {
		host = rd.Host
	}
	hostname, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		hostname, port = h, p
		if strings.Contains(h, ":") {
			hostname = "[" + h + "]"
		}
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(rd.Port)
	case rd.Scheme != "" && (port == "80" || port == "443"):
		port = ""
	}
	// A scheme's own port is left out of the Location, as Envoy does.
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	if port != "" {
		hostname += ":" + port
	}
	path := r.URL.RequestURI()
	if rd.HasPrefix {
		// prefix_rewrite: the matched prefix (the whole path for other matches) is
		// replaced; the query stays.
		p := r.URL.EscapedPath()
		if rd.MatchPrefix != "" && strings.HasPrefix(p, rd.MatchPrefix) {
			p = rd.Prefix + p[len(rd.MatchPrefix):]
		} else {
			p = rd.Prefix
		}
		if p == "" {
			p = "/"
		}
		path = p
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
	}
	if rd.Path != "" {
		path = rd.Path
		if !strings.Contains(rd.Path, "?") && r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
	}
	w.Header().Set("Location", scheme+"://"+hostname+path)
	w.WriteHeader(rd.Code)
}

// applyHeaders edits h as Envoy does: removals first, then each value by its append
// action.
func applyHeaders(h http.Header, m resource.HeaderMutation) {
	for _, k := range m.Remove {
		delete(h, k)
	}
	for _, hv := range m.Add {
		_, exists := h[hv.Key]
		switch hv.Action {
		case resource.AppendIfExistsOrAdd:
			h[hv.Key] = append(h[hv.Key], hv.Value)
		case resource.AddIfAbsent:
			if !exists {
				h[hv.Key] = []string{hv.Value}
			}
		case resource.OverwriteIfExistsOrAdd:
			h[hv.Key] = []string{hv.Value}
		case resource.OverwriteIfExists:
			if exists {
				h[hv.Key] = []string{hv.Value}
			}
		}
	}
}

// applyRewrite changes the request's path and Host as the route's rewrite says.
func applyRewrite(r *http.Request, rt *route.Route) {
	rw := &rt.Rewrite
	if rw.HasPrefix || rw.Regex != nil {
		path := r.URL.EscapedPath()
		switch {
		case rw.Regex != nil:
			path = rw.Regex.ReplaceAllString(path, rw.Substitution)
		case rt.MatchKind() == resource.PathPrefix && len(rt.MatchedPrefix()) <= len(path):
			path = rw.Prefix + path[len(rt.MatchedPrefix()):]
		default:
			// Exact and regex matches: the whole path is the matched part.
			path = rw.Prefix
		}
		setEscapedPath(r.URL, path)
		r.RequestURI = ""
	}
	if rw.Host != "" {
		r.Host = rw.Host
	}
}

func setEscapedPath(u *url.URL, p string) {
	if dec, err := url.PathUnescape(p); err == nil {
		u.Path, u.RawPath = dec, p
		return
	}
	u.Path, u.RawPath = p, ""
}

// shadowHost is Envoy's mirror Host: "-shadow" after the host name, before any port.
func shadowHost(host string) string {
	if h, p, err := net.SplitHostPort(host); err == nil && !strings.Contains(h, ":") {
		return h + "-shadow:" + p
	}
	return host + "-shadow"
}

// maxMirrorBody is the most of a request body kept to send with a mirror copy; a
// longer request is not mirrored.
const maxMirrorBody = 1 << 20

// mirrorTimeout bounds a mirror request when its route has no timeout.
const mirrorTimeout = 30 * time.Second

// hopHeaders are not copied to a mirror request (ReverseProxy drops them for the main
// request).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade"}

// mirror sends fire-and-forget copies of r (as forwarded: after header edits and
// rewrites) to the route's mirror clusters chosen by their fractions. A request with a
// body is copied as the main request streams it and mirrored once it is complete, so
// neither waits for the other (a long stream is never held back); a body over
// maxMirrorBody is not mirrored.
func (f *Forwarder) mirror(cfg *Config, r *http.Request, rt *route.Route) {
	var outs []*http.Request
	var clusters []*resource.Mirror
	for i := range rt.Mirrors {
		m := &rt.Mirrors[i]
		if cfg.Clusters[m.Cluster] == nil || !chance(m.Numerator, m.Denominator) {
			continue
		}
		out := r.Clone(context.WithoutCancel(r.Context()))
		out.Host = shadowHost(r.Host)
		out.URL.Scheme, out.URL.Host = "http", out.Host
		out.RequestURI = ""
		for _, h := range hopHeaders {
			delete(out.Header, h)
		}
		outs, clusters = append(outs, out), append(clusters, m)
	}
	if len(outs) == 0 {
		return
	}
	timeout := rt.Timeout
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	send := func(body []byte) {
		for i, out := range outs {
			ctx, cancel := context.WithTimeout(out.Context(), timeout)
			out.Body, out.ContentLength = http.NoBody, int64(len(body))
			if len(body) > 0 {
				out.Body = io.NopCloser(bytes.NewReader(body))
			}
			info := streaminfo.New("mirror", streaminfo.Outbound, streaminfo.ProtocolHTTP)
			out = out.WithContext(context.WithValue(ctx, stateKey, &reqState{cluster: cfg.Clusters[clusters[i].Cluster], info: info}))
			go func() {
				defer cancel()
				resp, err := roundTripper{f}.RoundTrip(out)
				if err != nil {
					f.log.Debug("mirror request failed", "cluster", out.Host, "error", err)
					return
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
			}()
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		send(nil)
		return
	}
	r.Body = &mirrorTee{rc: r.Body, done: send, tooLarge: func() {
		f.log.Debug("request not mirrored: body larger than 1 MiB", "host", r.Host, "path", r.URL.Path)
	}}
}

// mirrorTee keeps a copy of what the main request reads of its body and hands it to
// done at the end of the body (tooLarge instead when it outgrows maxMirrorBody). Reads
// come from one goroutine at a time (the transport's, through replayBody).
type mirrorTee struct {
	rc       io.ReadCloser
	buf      []byte
	over     bool
	fired    bool
	done     func([]byte)
	tooLarge func()
}

func (m *mirrorTee) Read(p []byte) (int, error) {
	n, err := m.rc.Read(p)
	if n > 0 && !m.over {
		if len(m.buf)+n > maxMirrorBody {
			m.over, m.buf = true, nil
		} else {
			m.buf = append(m.buf, p[:n]...)
		}
	}
	if err == io.EOF && !m.fired {
		m.fired = true
		if m.over {
			m.tooLarge()
		} else {
			m.done(m.buf)
		}
	}
	return n, err
}

func (m *mirrorTee) Close() error { return m.rc.Close() }
