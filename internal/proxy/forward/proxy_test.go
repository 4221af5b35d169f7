package forward

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// TestForwardHeadersBothWays: what ReverseProxy did for the proxy, the forwarder does:
// hop-by-hop headers (and those Connection names) removed both ways, Te: trailers
// kept, Forwarded dropped, X-Forwarded-* kept, X-Forwarded-Proto and X-Request-Id
// defaulted, no Go User-Agent added, unparsable query parameters dropped.
func TestForwardHeadersBothWays(t *testing.T) {
	var got *http.Request
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	front := frontFor(t, resource.ClusterPolicy{}, resource.LBRoundRobin, nil, backend.URL)
	req, _ := http.NewRequest("GET", front+"/p?a=1;b=2&c=3", nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Forwarded", "for=1.2.3.4")
	req.Header.Set("X-Forwarded-For", "5.6.7.8")
	req.Header["User-Agent"] = nil
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	h := got.Header
	for _, k := range []string{"X-Hop", "Forwarded", "User-Agent"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("X-Forwarded-For") != "5.6.7.8" || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Request-Id") == "" {
		t.Errorf("upstream headers %v", h)
	}
	if got.URL.RawQuery != "c=3" {
		t.Errorf("query %q, want the unparsable parameter dropped", got.URL.RawQuery)
	}
	for _, k := range []string{"X-Hop-Resp", "Keep-Alive"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("client got %s: %q", k, v)
		}
	}
	if v := resp.Header.Values("X-Multi"); strings.Join(v, ",") != "a,b" {
		t.Errorf("X-Multi %q", v)
	}
}

// TestForwardTrailersAnd1xx: response trailers (announced and not) reach the client,
// and a 103 Early Hints is passed on before the final answer.
func TestForwardTrailersAnd1xx(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Announced")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Announced", "yes")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	}))
	defer backend.Close()
	front := frontFor(t, resource.ClusterPolicy{}, resource.LBRoundRobin, nil, backend.URL)
	var early []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, code)
		link = h.Get("Link")
		return nil
	}}
	req, _ := http.NewRequest("GET", front+"/", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" {
		t.Fatalf("body %q", b)
	}
	if len(early) != 1 || early[0] != 103 || link == "" {
		t.Errorf("1xx %v link %q", early, link)
	}
	if resp.Header.Get("Link") != "" {
		t.Errorf("the 103's Link leaked into the final header")
	}
	if resp.Trailer.Get("X-Announced") != "yes" || resp.Trailer.Get("X-Late") != "late" {
		t.Errorf("trailers %v", resp.Trailer)
	}
}

// TestForwardEventStreamFlushes: a sized text/event-stream response still goes out
// write by write.
func TestForwardEventStreamFlushes(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Content-Length", "20")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "data: 2\n\n")
	}))
	defer backend.Close()
	defer close(release)
	front := frontFor(t, resource.ClusterPolicy{}, resource.LBRoundRobin, nil, backend.URL)
	line := make(chan string, 1)
	go func() {
		resp, err := http.Get(front + "/")
		if err != nil {
			line <- err.Error()
			return
		}
		defer resp.Body.Close()
		l, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "data: one\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event did not arrive while the upstream held the rest back")
	}
}
