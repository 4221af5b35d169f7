package forward

import (
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forward sends the request upstream and copies the answer back. It does what
// httputil.ReverseProxy did for the proxy, without ReverseProxy's per-request clones
// of the request, header map and URL, its client trace and extra contexts (a fifth of
// the sidecar's allocations, docs/BENCHMARKS.md): the inbound request is the handler's
// to edit, so its header map is edited in place and sent. Protocol upgrades keep
// ReverseProxy, whose 101 handling copies the upgraded connection both ways.
func (f *Forwarder) forward(rw *recorder, in *http.Request, ctx context.Context, st *reqState) {
	if len(in.Header["Upgrade"]) > 0 {
		f.proxy.ServeHTTP(rw, in.WithContext(context.WithValue(ctx, stateKey, st)))
		return
	}
	outboundHeaders(in)
	out := in.WithContext(ctx)
	out.Close = false
	out.RequestURI = ""
	if in.ContentLength == 0 {
		out.Body = nil
	}
	u := *in.URL
	u.Scheme, u.Host = "http", in.Host  // the endpoint replaces Host per attempt
	u.RawQuery = cleanQuery(u.RawQuery) // as ReverseProxy: unparsable parameters go
	out.URL = &u
	st.rw = rw
	resp, err := roundTripper{f}.roundTrip(out, st)
	st.endInformational()
	if err != nil {
		f.writeErrorState(rw, out, err, st)
		return
	}
	removeHopByHop(resp.Header)
	f.applyResponse(resp, st)
	dst := rw.Header()
	for k, vv := range resp.Header {
		k = http.CanonicalHeaderKey(k)
		if prev, ok := dst[k]; ok {
			dst[k] = append(prev, vv...)
		} else {
			dst[k] = vv // the response's own slice: nothing else holds it
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	rw.WriteHeader(resp.StatusCode)
	// Unsized responses (gRPC, chunked) and event streams go out write by write; sized
	// ones are written once at the end (ReverseProxy with FlushInterval 0).
	flush := resp.ContentLength == -1 || isEventStream(resp.Header)
	if flush {
		rw.Flush() // the headers now, even when the body comes late
	}
	if err := f.copyBody(rw, resp.Body, flush); err != nil {
		resp.Body.Close()
		if in.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler) // the server aborts the response
		}
		return
	}
	resp.Body.Close() // now, to fill resp.Trailer
	if len(resp.Trailer) > 0 {
		rw.Flush() // chunked, so the trailers can follow
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			for _, v := range vv {
				dst.Add(k, v)
			}
		}
		return
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			dst.Add(http.TrailerPrefix+k, v)
		}
	}
}

// outboundHeaders edits the inbound request's header map into the upstream request's.
func outboundHeaders(in *http.Request) {
	h := in.Header
	teTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopByHop(h)
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
	// ReverseProxy with a Rewrite function drops Forwarded and the X-Forwarded-*
	// headers, and the proxy's rewrite put the client's X-Forwarded-* back: the net
	// effect is Forwarded removed, X-Forwarded-Proto defaulted.
	delete(h, "Forwarded")
	if len(h["X-Forwarded-Proto"]) == 0 || h["X-Forwarded-Proto"][0] == "" {
		proto := "http"
		if in.TLS != nil {
			proto = "https"
		}
		h["X-Forwarded-Proto"] = []string{proto}
	}
	if len(h["X-Request-Id"]) == 0 || h["X-Request-Id"][0] == "" {
		h["X-Request-Id"] = []string{newRequestID()}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // send none rather than Go's default
	}
}

// copyBody copies a response body with a pooled buffer, flushing each write when
// asked; read and write errors end it (the caller aborts the response).
func (f *Forwarder) copyBody(rw *recorder, body io.Reader, flush bool) error {
	buf := f.buffers.Get()
	defer f.buffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				rw.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if rerr != context.Canceled {
				f.log.Debug("upstream read error during body copy", "error", rerr)
			}
			return rerr
		}
	}
}

// hopByHopHeaders are the hop-by-hop headers ReverseProxy removes both ways (RFC 9110
// section 7.6.1, and the older ones it keeps removing).
var hopByHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop removes the headers the Connection header names, then the
// hop-by-hop ones.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopByHopHeaders {
		delete(h, k)
	}
}

// isEventStream reports a text/event-stream response (server-sent events flush per
// write whatever their length).
func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	const es = "text/event-stream"
	v := strings.TrimLeft(ct[0], " \t")
	if len(v) < len(es) || !strings.EqualFold(v[:len(es)], es) {
		return false
	}
	rest := strings.TrimLeft(v[len(es):], " \t")
	return rest == "" || rest[0] == ';'
}

// cleanQuery is ReverseProxy's cleanQueryParams: a query with a semicolon or a bad
// percent escape is re-encoded from what url.ParseQuery accepts; others stay as they
// are.
func cleanQuery(s string) string {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencodeQuery(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencodeQuery(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func reencodeQuery(s string) string {
	v, _ := url.ParseQuery(s)
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Got1xx forwards an informational answer (103 Early Hints, say) downstream while the
// request is in flight. The h1client calls it on the request's goroutine,
// http.Transport from its read loop, hence the lock and the done flag (as
// ReverseProxy has).
func (st *reqState) Got1xx(code int, header textproto.MIMEHeader) error {
	st.mu1xx.Lock()
	defer st.mu1xx.Unlock()
	if st.rw == nil {
		return nil
	}
	h := st.rw.Header()
	for k, vv := range header {
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	st.rw.WriteHeader(code)
	clear(h)
	return nil
}

// endInformational stops 1xx forwarding once the round trip returned.
func (st *reqState) endInformational() {
	st.mu1xx.Lock()
	st.rw = nil
	st.mu1xx.Unlock()
}
