package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpDial dials the target's address (plaintext).
func tcpDial(ctx context.Context, t *Target) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", t.Key.Addr)
}

// connCounter counts the connections a test server accepted.
type connCounter struct{ n atomic.Int32 }

func (c *connCounter) hook(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.n.Add(1)
	}
}

func newServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = cc.hook
	s.Start()
	t.Cleanup(s.Close)
	return s, cc
}

func target(s *httptest.Server) *Target {
	return &Target{Key: Key{Addr: s.Listener.Addr().String()}}
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, p *Pool, req *http.Request, tg *Target) (*http.Response, string) {
	t.Helper()
	resp, err := p.RoundTrip(req, tg)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
	w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
	w.Header().Set("X-Conn", r.Header.Get("Connection"))
	w.Header().Set("X-UA", r.Header.Get("User-Agent"))
	w.Header().Set("X-Host", r.Host)
	for k, v := range r.Trailer {
		w.Header().Set("X-Trailer-"+k, strings.Join(v, ","))
	}
	_, _ = w.Write(b)
}

func TestRoundTripReusesConnections(t *testing.T) {
	s, cc := newServer(t, echo)
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	for i := 0; i < 5; i++ {
		req := newReq(t, "POST", s.URL+"/echo?x=1", strings.NewReader("hello"))
		req.Host = "svc.example:80"
		req.Header.Set("X-Custom", "  spaced  ")
		resp, body := do(t, p, req, tg)
		if body != "hello" || resp.StatusCode != 200 {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Length"); got != "5" {
			t.Fatalf("upstream saw length %s", got)
		}
		if got := resp.Header.Get("X-Host"); got != "svc.example:80" {
			t.Fatalf("upstream saw Host %q", got)
		}
		if got := resp.Header.Get("X-UA"); got != defaultUserAgent {
			t.Fatalf("User-Agent %q", got)
		}
	}
	if n := cc.n.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests, want 1", n)
	}
	// GET without body, POST with empty body.
	_, body := do(t, p, newReq(t, "GET", s.URL+"/", nil), tg)
	if body != "" {
		t.Fatalf("GET body %q", body)
	}
	resp, _ := do(t, p, newReq(t, "POST", s.URL+"/", nil), tg)
	if resp.Header.Get("X-Length") != "0" {
		t.Fatalf("empty POST length %q", resp.Header.Get("X-Length"))
	}
	// An explicitly empty User-Agent sends none.
	req := newReq(t, "GET", s.URL+"/", nil)
	req.Header["User-Agent"] = []string{""}
	resp, _ = do(t, p, req, tg)
	if ua := resp.Header.Get("X-UA"); ua != "" {
		t.Fatalf("User-Agent %q, want none", ua)
	}
}

// A body of unknown length goes chunked, with its trailers; a large one is streamed
// while the response is read.
func TestChunkedAndLargeRequestBodies(t *testing.T) {
	s, _ := newServer(t, echo)
	p := New(tcpDial)
	defer p.Close()
	pr, pw := io.Pipe()
	req := newReq(t, "PUT", s.URL+"/", pr)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(pw, "part%d;", i)
		}
		req.Trailer.Set("X-Sum", "42")
		pw.Close()
	}()
	resp, body := do(t, p, req, target(s))
	if body != "part0;part1;part2;" {
		t.Fatalf("body %q", body)
	}
	if te := resp.Header.Get("X-TE"); te != "chunked" {
		t.Fatalf("transfer-encoding %q", te)
	}
	if tr := resp.Header.Get("X-Trailer-X-Sum"); tr != "42" {
		t.Fatalf("trailer %q", tr)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	resp, body = do(t, p, newReq(t, "POST", s.URL+"/", bytes.NewReader(big)), target(s))
	if body != string(big) || resp.Header.Get("X-Length") != fmt.Sprint(len(big)) {
		t.Fatalf("large body: %d bytes back, length %s", len(body), resp.Header.Get("X-Length"))
	}
}

// The upstream answers before reading a large body and closes: the answer comes back.
func TestEarlyResponseToLargeBody(t *testing.T) {
	s, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	p := New(tcpDial)
	defer p.Close()
	big := bytes.Repeat([]byte("x"), 8<<20)
	resp, err := p.RoundTrip(newReq(t, "POST", s.URL+"/", bytes.NewReader(big)), target(s))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestResponseFraming(t *testing.T) {
	s, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		case "/chunked":
			w.Header().Set("Trailer", "X-Checksum")
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			w.Write([]byte("b"))
			w.Header().Set("X-Checksum", "ab")
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("sized"))
		}
	})
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	for _, c := range []struct{ method, path, body string }{
		{"HEAD", "/", ""}, {"GET", "/204", ""}, {"GET", "/304", ""}, {"GET", "/", "sized"}, {"GET", "/chunked", "ab"},
	} {
		resp, body := do(t, p, newReq(t, c.method, s.URL+c.path, nil), tg)
		if body != c.body {
			t.Fatalf("%s %s: body %q, want %q", c.method, c.path, body, c.body)
		}
		if c.path == "/chunked" {
			if resp.ContentLength != -1 || resp.Trailer.Get("X-Checksum") != "ab" {
				t.Fatalf("chunked: length %d trailer %v", resp.ContentLength, resp.Trailer)
			}
		}
		if c.method == "HEAD" && resp.ContentLength != 5 {
			t.Fatalf("HEAD content length %d", resp.ContentLength)
		}
	}
	if n := cc.n.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 (every framing keeps the connection)", n)
	}
}

func Test1xxGoesToTheTrace(t *testing.T) {
	s, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Write([]byte("done"))
	})
	p := New(tcpDial)
	defer p.Close()
	var got []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		link = h.Get("Link")
		return nil
	}}
	req := newReq(t, "GET", s.URL+"/", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, body := do(t, p, req, target(s))
	if resp.StatusCode != 200 || body != "done" || len(got) != 1 || got[0] != 103 || link == "" {
		t.Fatalf("status %d body %q 1xx %v link %q", resp.StatusCode, body, got, link)
	}
}

func TestConnectionClose(t *testing.T) {
	s, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("ok"))
	})
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	do(t, p, newReq(t, "GET", s.URL+"/close", nil), tg)
	if p.IdleCount() != 0 {
		t.Fatal("a connection the upstream closes was kept")
	}
	req := newReq(t, "GET", s.URL+"/", nil)
	req.Close = true
	resp, _ := do(t, p, req, tg)
	if p.IdleCount() != 0 || resp.StatusCode != 200 {
		t.Fatal("a request with Connection: close left its connection idle")
	}
	do(t, p, newReq(t, "GET", s.URL+"/", nil), tg)
	do(t, p, newReq(t, "GET", s.URL+"/", nil), tg)
	if n := cc.n.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	s, cc := newServer(t, echo)
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	tg.MaxRequests = 2
	var conns []string
	for i := 0; i < 4; i++ {
		resp, _ := do(t, p, newReq(t, "GET", s.URL+"/", nil), tg)
		conns = append(conns, resp.Header.Get("X-Conn"))
	}
	if fmt.Sprint(conns) != "[ close  close]" {
		t.Fatalf("Connection headers %q", conns)
	}
	if n := cc.n.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestIdleTimeoutClosesConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	s := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	s.Start()
	defer s.Close()
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	tg.IdleTimeout = 50 * time.Millisecond
	do(t, p, newReq(t, "GET", s.URL+"/", nil), tg)
	if p.IdleCount() != 1 {
		t.Fatal("connection not idle")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection not closed after its idle timeout")
	}
	if p.IdleCount() != 0 {
		t.Fatal("closed connection still idle")
	}
}

// rawServer answers each connection's first request with resp, then closes it.
func rawServer(t *testing.T, resp string, conns *atomic.Int32) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, resp)
			}()
		}
	}()
	return ln
}

// The upstream closes idle connections (right after a response, and long before the
// next request): a request finding its reused connection closed is sent again on a
// new one, when its body can be sent again.
func TestStaleConnectionIsRetried(t *testing.T) {
	var conns atomic.Int32
	ln := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &conns)
	p := New(tcpDial)
	defer p.Close()
	tg := &Target{Key: Key{Addr: ln.Addr().String()}}
	url := "http://" + ln.Addr().String() + "/"
	do(t, p, newReq(t, "GET", url, nil), tg)
	// Immediately: the close is found by the read (retry path).
	time.Sleep(10 * time.Millisecond)
	do(t, p, newReq(t, "GET", url, nil), tg)
	// After a pause: found by the peek before use.
	time.Sleep(staleCheckAfter + 50*time.Millisecond)
	do(t, p, newReq(t, "GET", url, nil), tg)
	// A body with GetBody is replayed.
	time.Sleep(10 * time.Millisecond)
	req := newReq(t, "POST", url, strings.NewReader("payload"))
	do(t, p, req, tg)
	if n := conns.Load(); n != 4 {
		t.Fatalf("%d connections, want 4", n)
	}
	// A body that cannot be replayed fails.
	time.Sleep(10 * time.Millisecond)
	req = newReq(t, "POST", url, strings.NewReader("payload"))
	req.GetBody = nil
	if resp, err := p.RoundTrip(req, tg); err == nil {
		resp.Body.Close()
		t.Fatal("a stale connection with a body that cannot be sent again succeeded")
	}
}

func TestContextCancelAbortsBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first"))
		if r.URL.Path == "/short" {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	p := New(tcpDial)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req := newReq(t, "GET", s.URL+"/", nil).WithContext(ctx)
	resp, err := p.RoundTrip(req, target(s))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first read %q %v: the response is not streamed", buf, err)
	}
	cancel()
	_, err = resp.Body.Read(buf)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	if p.IdleCount() != 0 {
		t.Fatal("aborted connection kept")
	}
	do(t, p, newReq(t, "GET", s.URL+"/short", nil), target(s))
	if n := cc.n.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestHeadTimeout(t *testing.T) {
	s, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	p := New(tcpDial)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.RoundTrip(newReq(t, "GET", s.URL+"/", nil).WithContext(ctx), target(s))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
}

func TestRejectsInvalidRequests(t *testing.T) {
	p := New(func(context.Context, *Target) (net.Conn, error) { return nil, errors.New("must not dial") })
	req := newReq(t, "GET", "http://x/", nil)
	req.Header["X-Bad"] = []string{"a\r\nInjected: yes"}
	if _, err := p.RoundTrip(req, &Target{}); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Fatalf("err %v", err)
	}
	req = newReq(t, "GET", "http://x/", nil)
	req.Header["Bad Name"] = []string{"a"}
	if _, err := p.RoundTrip(req, &Target{}); err == nil {
		t.Fatal("invalid header name accepted")
	}
	req = newReq(t, "GET", "http://x/", nil)
	req.Header.Set("Upgrade", "websocket")
	if _, err := p.RoundTrip(req, &Target{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("upgrade: %v", err)
	}
}

// Extra bytes after a response make the connection unusable.
func TestUnsolicitedBytesCloseConnection(t *testing.T) {
	var conns atomic.Int32
	ln := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", &conns)
	p := New(tcpDial)
	defer p.Close()
	tg := &Target{Key: Key{Addr: ln.Addr().String()}}
	do(t, p, newReq(t, "GET", "http://"+ln.Addr().String()+"/", nil), tg)
	if p.IdleCount() != 0 {
		t.Fatal("connection with unsolicited bytes kept")
	}
}

func TestTLS(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	cc := &connCounter{}
	s.Config.ConnState = cc.hook
	s.StartTLS()
	defer s.Close()
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	p := New(func(ctx context.Context, tg *Target) (net.Conn, error) {
		c, err := tcpDial(ctx, tg)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, tg.Data.(*tls.Config))
		return tc, tc.HandshakeContext(ctx)
	})
	defer p.Close()
	tg := &Target{Key: Key{Addr: s.Listener.Addr().String(), TLS: "test"}, Data: cfg}
	for i := 0; i < 3; i++ {
		resp, body := do(t, p, newReq(t, "POST", s.URL+"/", strings.NewReader("secret")), tg)
		if body != "secret" || resp.TLS == nil || !resp.TLS.HandshakeComplete {
			t.Fatalf("body %q tls %v", body, resp.TLS)
		}
	}
	if n := cc.n.Load(); n != 1 {
		t.Fatalf("%d TLS connections, want 1", n)
	}
}

// Concurrent requests each get a connection of their own; all come back to the pool.
func TestConcurrentRequests(t *testing.T) {
	s, _ := newServer(t, echo)
	p := New(tcpDial)
	defer p.Close()
	tg := target(s)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				want := fmt.Sprintf("req-%d-%d", i, j)
				resp, err := p.RoundTrip(newReq(t, "POST", s.URL+"/", strings.NewReader(want)), tg)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					t.Errorf("got %q want %q", b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := p.IdleCount(); n < 1 || n > 8 {
		t.Fatalf("%d idle connections", n)
	}
}
