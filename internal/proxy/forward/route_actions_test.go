package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/streaminfo"
)

func TestWriteRedirect(t *testing.T) {
	tests := []struct {
		name   string
		target string
		tls    bool
		rd     resource.Redirect
		want   string
	}{
		{"path keeps query", "http://web:8080/old?a=1", false, resource.Redirect{Path: "/new", Code: 301}, "http://web:8080/new?a=1"},
		{"path with its own query", "http://web:8080/old?a=1", false, resource.Redirect{Path: "/new?b=2", Code: 301}, "http://web:8080/new?b=2"},
		{"host keeps path", "http://web:8080/p?q", false, resource.Redirect{Host: "other", Code: 302}, "http://other/p?q"},
		{"host with port kept", "http://web/p", false, resource.Redirect{Host: "other:81", Code: 302}, "http://other:81/p"},
		{"port replaces", "http://web:8080/p", false, resource.Redirect{Port: 9000, Code: 307}, "http://web:9000/p"},
		{"scheme drops default port", "http://web:80/p", false, resource.Redirect{Scheme: "https", Code: 301}, "https://web/p"},
		{"scheme keeps other port", "http://web:8080/p", false, resource.Redirect{Scheme: "https", Code: 301}, "https://web:8080/p"},
		{"tls request", "https://web/p", true, resource.Redirect{Path: "/q", Code: 308}, "https://web/q"},
		{"ipv6", "http://[::1]:8080/p", false, resource.Redirect{Port: 9, Code: 301}, "http://[::1]:9/p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			writeRedirect(w, r, &tc.rd)
			if w.Code != tc.rd.Code || w.Header().Get("Location") != tc.want {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Header().Get("Location"), tc.rd.Code, tc.want)
			}
		})
	}
}

func TestApplyHeaders(t *testing.T) {
	h := http.Header{"A": {"1"}, "B": {"2"}, "Gone": {"x"}}
	applyHeaders(h, resource.HeaderMutation{
		Remove: []string{"Gone"},
		Add: []resource.HeaderValue{
			{Key: "A", Value: "more", Action: resource.AppendIfExistsOrAdd},
			{Key: "B", Value: "new", Action: resource.OverwriteIfExistsOrAdd},
			{Key: "C", Value: "c", Action: resource.AddIfAbsent},
			{Key: "A", Value: "ignored", Action: resource.AddIfAbsent},
			{Key: "D", Value: "ignored", Action: resource.OverwriteIfExists},
			{Key: "C", Value: "c2", Action: resource.OverwriteIfExists},
		},
	})
	want := http.Header{"A": {"1", "more"}, "B": {"new"}, "C": {"c2"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func compiledRoute(t *testing.T, r resource.Route) *route.Route {
	t.Helper()
	tbl := route.New(&resource.RouteConfig{Name: "t", VirtualHosts: []resource.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []resource.Route{r}}}})
	rt := tbl.Match(httptest.NewRequest(http.MethodGet, "http://x/", nil))
	if rt == nil && r.Match.Kind == resource.PathPrefix && r.Match.Path == "/" {
		t.Fatal("no route")
	}
	return tbl.VirtualHost("x").Routes[0]
}

func TestApplyRewrite(t *testing.T) {
	tests := []struct {
		name   string
		match  resource.RouteMatch
		rw     resource.Rewrite
		target string
		path   string
		host   string
	}{
		{"prefix", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/api/v1/"}, resource.Rewrite{Prefix: "/v2/", HasPrefix: true}, "http://h/api/v1/items?x=1", "/v2/items?x=1", "h"},
		{"prefix to root", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/api"}, resource.Rewrite{Prefix: "/", HasPrefix: true}, "http://h/api/x", "//x", "h"},
		{"exact replaces all", resource.RouteMatch{Kind: resource.PathExact, Path: "/a"}, resource.Rewrite{Prefix: "/b", HasPrefix: true}, "http://h/a?q", "/b?q", "h"},
		{"regex", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/"}, resource.Rewrite{Regex: regexp.MustCompile("^/users/([0-9]+)$"), Substitution: "/u/${1}"}, "http://h/users/42", "/u/42", "h"},
		{"regex every match", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/"}, resource.Rewrite{Regex: regexp.MustCompile("a"), Substitution: "b"}, "http://h/aXa", "/bXb", "h"},
		{"escaped path kept", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/p/"}, resource.Rewrite{Prefix: "/q/", HasPrefix: true}, "http://h/p/a%2Fb", "/q/a%2Fb", "h"},
		{"host", resource.RouteMatch{Kind: resource.PathPrefix, Path: "/"}, resource.Rewrite{Host: "backend"}, "http://h/p", "/p", "backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := compiledRoute(t, resource.Route{Name: "r", Match: tc.match, Rewrite: tc.rw, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}}})
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			applyRewrite(r, rt)
			if got := r.URL.RequestURI(); got != tc.path || r.Host != tc.host {
				t.Errorf("got %q host %q, want %q host %q", got, r.Host, tc.path, tc.host)
			}
		})
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{"web:8080": "web-shadow:8080", "web": "web-shadow", "[::1]:80": "[::1]:80-shadow", "a.b.c": "a.b.c-shadow"} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandleCORS(t *testing.T) {
	c := &resource.CORS{AllowOrigins: []resource.StringMatcher{{Kind: resource.StringExact, Value: "https://ok"}},
		AllowMethods: "GET,POST", AllowHeaders: "x-a", ExposeHeaders: "x-b", MaxAge: "60", AllowCredentials: true}
	pre := httptest.NewRequest(http.MethodOptions, "http://h/", nil)
	pre.Header.Set("Origin", "https://ok")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	w := httptest.NewRecorder()
	if _, answered := handleCORS(w, pre, c); !answered || w.Code != 200 || w.Header().Get("Access-Control-Allow-Methods") != "GET,POST" ||
		w.Header().Get("Access-Control-Max-Age") != "60" || w.Header().Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight: answered=%v %d %v", answered, w.Code, w.Header())
	}
	actual := httptest.NewRequest(http.MethodGet, "http://h/", nil)
	actual.Header.Set("Origin", "https://ok")
	h, answered := handleCORS(httptest.NewRecorder(), actual, c)
	if answered || h.Get("Access-Control-Allow-Origin") != "https://ok" || h.Get("Access-Control-Expose-Headers") != "x-b" {
		t.Errorf("actual request: %v %v", answered, h)
	}
	pre.Header.Set("Origin", "https://evil")
	if h, answered := handleCORS(httptest.NewRecorder(), pre, c); answered || h != nil {
		t.Errorf("disallowed origin must pass through: %v %v", answered, h)
	}
	if h, answered := handleCORS(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://h/", nil), c); answered || h != nil {
		t.Errorf("no Origin: %v %v", answered, h)
	}
}

func TestInjectFault(t *testing.T) {
	info := streaminfo.New("l", streaminfo.Outbound, streaminfo.ProtocolHTTP)
	w := httptest.NewRecorder()
	start := time.Now()
	ok := injectFault(context.Background(), w, httptest.NewRequest(http.MethodGet, "http://h/", nil),
		&resource.Fault{HasDelay: true, Delay: 50 * time.Millisecond, DelayNumerator: 1, DelayDenom: 1, HasAbort: true, AbortHTTP: 503, AbortGRPC: -1, AbortNumerator: 100, AbortDenom: 100}, info)
	if ok || w.Code != 503 || !strings.Contains(w.Body.String(), "fault filter abort") || time.Since(start) < 50*time.Millisecond {
		t.Errorf("delay+abort: ok=%v %d %q after %v", ok, w.Code, w.Body.String(), time.Since(start))
	}
	if !info.Flags.Has(streaminfo.DelayInjected) || !info.Flags.Has(streaminfo.FaultInjected) {
		t.Errorf("flags %v, want DI and FI", info.Flags)
	}
	// Numerator 0: nothing happens.
	info = streaminfo.New("l", streaminfo.Outbound, streaminfo.ProtocolHTTP)
	if !injectFault(context.Background(), httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://h/", nil),
		&resource.Fault{HasAbort: true, AbortHTTP: 503, AbortGRPC: -1, AbortNumerator: 0, AbortDenom: 100}, info) || info.Flags != 0 {
		t.Errorf("0%% abort applied: %v", info.Flags)
	}
	// gRPC abort: trailers-only answer.
	w = httptest.NewRecorder()
	injectFault(context.Background(), w, httptest.NewRequest(http.MethodPost, "http://h/", nil), &resource.Fault{HasAbort: true, AbortGRPC: 8, AbortNumerator: 1, AbortDenom: 1}, info)
	if w.Code != 200 || w.Header().Get("Grpc-Status") != "8" {
		t.Errorf("grpc abort: %d %v", w.Code, w.Header())
	}
	// The caller leaving during a delay ends the request.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if injectFault(ctx, httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://h/", nil), &resource.Fault{HasDelay: true, Delay: time.Hour, DelayNumerator: 1, DelayDenom: 1}, info) {
		t.Error("delay did not stop with the caller")
	}
}

func TestRetryable(t *testing.T) {
	resp := func(code int, grpc string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if grpc != "" {
			r.Header.Set("Grpc-Status", grpc)
		}
		return r
	}
	p := func(on resource.RetryOn, codes ...int) *resource.RetryPolicy {
		return &resource.RetryPolicy{On: on, StatusCodes: codes}
	}
	connect := &ConnectError{Address: "a", Err: errors.New("refused")}
	tests := []struct {
		name   string
		p      *resource.RetryPolicy
		resp   *http.Response
		err    error
		perTry bool
		want   bool
	}{
		{"5xx on 500", p(resource.Retry5xx), resp(500, ""), nil, false, true},
		{"5xx not on 404", p(resource.Retry5xx), resp(404, ""), nil, false, false},
		{"5xx on reset", p(resource.Retry5xx), nil, io.ErrUnexpectedEOF, false, true},
		{"5xx on connect failure", p(resource.Retry5xx), nil, connect, false, true},
		{"gateway-error on 504", p(resource.RetryGatewayError), resp(504, ""), nil, false, true},
		{"gateway-error not on 500", p(resource.RetryGatewayError), resp(500, ""), nil, false, false},
		{"gateway-error on per-try timeout", p(resource.RetryGatewayError), nil, errPerTryTimeout, true, true},
		{"gateway-error not on connect failure", p(resource.RetryGatewayError), nil, connect, false, false},
		{"connect-failure", p(resource.RetryConnectFailure), nil, connect, false, true},
		{"connect-failure not on reset", p(resource.RetryConnectFailure), nil, io.ErrUnexpectedEOF, false, false},
		{"reset", p(resource.RetryReset), nil, io.ErrUnexpectedEOF, false, true},
		{"refused-stream", p(resource.RetryRefusedStream), nil, errors.New("stream error: stream ID 3; REFUSED_STREAM"), false, true},
		{"retriable-4xx is 409", p(resource.RetryRetriable4xx), resp(409, ""), nil, false, true},
		{"status codes", p(resource.RetryRetriableStatusCodes, 418), resp(418, ""), nil, false, true},
		{"status codes need the condition", p(resource.Retry5xx, 418), resp(418, ""), nil, false, false},
		{"grpc unavailable", p(resource.RetryGRPCUnavailable), resp(200, "14"), nil, false, true},
		{"grpc cancelled not unavailable", p(resource.RetryGRPCUnavailable), resp(200, "1"), nil, false, false},
		{"grpc resource-exhausted", p(resource.RetryGRPCResourceExhausted), resp(200, "8"), nil, false, true},
		{"grpc internal", p(resource.RetryGRPCInternal), resp(200, "13"), nil, false, true},
		{"grpc deadline", p(resource.RetryGRPCDeadlineExceeded), resp(200, "4"), nil, false, true},
		{"caller gone", p(resource.Retry5xx), nil, context.Canceled, false, false},
	}
	for _, tc := range tests {
		if got := retryable(tc.p, tc.resp, tc.err, tc.perTry); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReplayBody(t *testing.T) {
	rb := newReplayBody(io.NopCloser(strings.NewReader("hello world")))
	a1 := rb.attempt()
	buf := make([]byte, 5)
	if n, _ := a1.Read(buf); string(buf[:n]) != "hello" {
		t.Fatalf("first read %q", buf[:n])
	}
	a2 := rb.attempt()
	if _, err := a1.Read(buf); !errors.Is(err, errAttemptAbandoned) {
		t.Errorf("abandoned attempt read: %v", err)
	}
	all, err := io.ReadAll(a2)
	if err != nil || string(all) != "hello world" {
		t.Errorf("replayed %q %v", all, err)
	}
	a3 := rb.attempt()
	if all, _ := io.ReadAll(a3); string(all) != "hello world" || !rb.replayable() {
		t.Errorf("second replay %q", all)
	}
	big := newReplayBody(io.NopCloser(strings.NewReader(strings.Repeat("x", maxRetryBody+10))))
	if n, _ := io.Copy(io.Discard, big.attempt()); n != maxRetryBody+10 || big.replayable() {
		t.Errorf("big body: read %d, replayable %v", n, big.replayable())
	}
}

func TestBackoff(t *testing.T) {
	p := &resource.RetryPolicy{BaseInterval: 25 * time.Millisecond, MaxInterval: 250 * time.Millisecond}
	for n := range 10 {
		limit := min(25*time.Millisecond<<n, 250*time.Millisecond)
		for range 50 {
			if d := backoff(p, n); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want in [0, %v]", n, d, limit)
			}
		}
	}
}
