package echo

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startEcho serves opts on a fresh 127.0.0.1 port and returns its address; the server
// is stopped (and checked to stop cleanly) when the test ends.
func startEcho(t *testing.T, opts Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not stop")
		}
	})
	return ln.Addr().String()
}

func getJSON(t *testing.T, c *http.Client, url string, header http.Header) (int, Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, r
}

var ignoreAddrs = cmpopts.IgnoreFields(Response{}, "RemoteAddr", "LocalAddr")

func TestHTTPEcho(t *testing.T) {
	addr := startEcho(t, Options{
		Identity: Identity{Workload: "catalog-v1", Namespace: "default", Replica: 2},
		Env:      map[string]string{"COLOR": "blue"},
	})
	code, got := getJSON(t, http.DefaultClient, "http://"+addr+"/items/7?x=1",
		http.Header{"X-Custom": {"a", "b"}, "User-Agent": {"test"}})
	want := Response{
		Workload: "catalog-v1", Namespace: "default", Replica: 2,
		Method: "GET", Path: "/items/7?x=1", Host: addr, Proto: "HTTP/1.1",
		Headers: map[string]string{"x-custom": "a", "user-agent": "test", "accept-encoding": "gzip"},
		Env:     map[string]string{"COLOR": "blue"},
	}
	if code != http.StatusOK {
		t.Errorf("status = %d, want 200", code)
	}
	if diff := cmp.Diff(want, got, ignoreAddrs); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	if got.LocalAddr != addr {
		t.Errorf("localAddr = %q, want %q", got.LocalAddr, addr)
	}
}

func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func TestH2CPriorKnowledge(t *testing.T) {
	addr := startEcho(t, Options{})
	code, got := getJSON(t, h2cClient(), "http://"+addr+"/h2", nil)
	if code != http.StatusOK || got.Proto != "HTTP/2.0" || got.Path != "/h2" {
		t.Errorf("got status %d proto %q path %q, want 200 HTTP/2.0 /h2", code, got.Proto, got.Path)
	}
}

// TestH2CUpgrade speaks the HTTP/1.1 Upgrade handshake by hand (Go's clients do not),
// then reads the answer to the upgraded request as HTTP/2 frames.
func TestH2CUpgrade(t *testing.T) {
	addr := startEcho(t, Options{Identity: Identity{Workload: "up"}})
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /upgraded HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n", addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var body []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (body so far %q)", err, body)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			fr.WriteSettingsAck()
		}
		if df, ok := f.(*http2.DataFrame); ok && df.StreamID == 1 {
			body = append(body, df.Data()...)
			if df.StreamEnded() {
				break
			}
		}
	}
	var got Response
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	// The upgraded request itself was sent as HTTP/1.1 (its Proto says so); its answer
	// came back as HTTP/2 frames on stream 1, which is what the upgrade is for.
	if got.Workload != "up" || got.Path != "/upgraded" {
		t.Errorf("got workload %q path %q", got.Workload, got.Path)
	}
}

func TestStatusAndLatencyOverrides(t *testing.T) {
	addr := startEcho(t, Options{Status: 201})
	tests := []struct {
		name       string
		query      string
		header     http.Header
		wantStatus int
		minLatency time.Duration
	}{
		{name: "server default", wantStatus: 201},
		{name: "query status", query: "?status=503", wantStatus: 503},
		{name: "header status", header: http.Header{"X-Echo-Status": {"429"}}, wantStatus: 429},
		{name: "query wins over header", query: "?status=500", header: http.Header{"X-Echo-Status": {"429"}}, wantStatus: 500},
		{name: "query latency", query: "?latency=60ms", wantStatus: 201, minLatency: 60 * time.Millisecond},
		{name: "header latency", header: http.Header{"X-Echo-Latency": {"40ms"}}, wantStatus: 201, minLatency: 40 * time.Millisecond},
		{name: "bad status", query: "?status=99", wantStatus: 400},
		{name: "bad latency", header: http.Header{"X-Echo-Latency": {"-1s"}}, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/"+tt.query, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if d := time.Since(start); d < tt.minLatency {
				t.Errorf("answered after %s, want at least %s", d, tt.minLatency)
			}
		})
	}
}

func TestServerLatencyFlag(t *testing.T) {
	addr := startEcho(t, Options{Latency: 50 * time.Millisecond})
	start := time.Now()
	code, _ := getJSON(t, http.DefaultClient, "http://"+addr+"/", nil)
	if d := time.Since(start); code != 200 || d < 50*time.Millisecond {
		t.Errorf("status %d after %s, want 200 after at least 50ms", code, d)
	}
}

func TestHealthzAndSize(t *testing.T) {
	addr := startEcho(t, Options{Status: 503})
	tests := []struct {
		path       string
		wantStatus int
		wantLen    int
	}{
		{"/healthz", 200, len("ok\n")},
		{"/size?bytes=1024", 503, 1024},
		{"/size?bytes=100000&status=200", 200, 100000},
		{"/size?bytes=0&status=200", 200, 0},
		{"/size?bytes=-1", 400, -1},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get("http://" + addr + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantLen >= 0 && len(body) != tt.wantLen {
				t.Errorf("body is %d bytes, want %d", len(body), tt.wantLen)
			}
		})
	}
}

func TestCallUpstreams(t *testing.T) {
	healthy := startEcho(t, Options{Identity: Identity{Workload: "inventory"}})
	broken := startEcho(t, Options{Identity: Identity{Workload: "broken"}, Status: 503})
	front := startEcho(t, Options{
		Identity:  Identity{Workload: "frontend"},
		Calls:     []string{"http://" + healthy + "/stock", "http://" + broken + "/"},
		Propagate: []string{"x-canary"},
	})
	code, got := getJSON(t, http.DefaultClient, "http://"+front+"/", http.Header{
		"X-Request-Id": {"req-1"},
		"Traceparent":  {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"X-B3-Traceid": {"abc"},
		"X-Canary":     {"true"},
		"X-Private":    {"not propagated"},
	})
	if code != http.StatusBadGateway {
		t.Errorf("status = %d, want 502 (an upstream failed)", code)
	}
	if len(got.Upstreams) != 2 {
		t.Fatalf("upstreams = %+v, want 2", got.Upstreams)
	}
	type hop struct {
		Status   int
		Workload string
		Path     string
		Headers  map[string]string
	}
	var hops []hop
	for _, u := range got.Upstreams {
		r, err := u.Response()
		if err != nil {
			t.Fatal(err)
		}
		delete(r.Headers, "user-agent")
		delete(r.Headers, "accept-encoding")
		hops = append(hops, hop{u.Status, r.Workload, r.Path, r.Headers})
	}
	propagated := map[string]string{
		"x-request-id": "req-1",
		"traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"x-b3-traceid": "abc",
		"x-canary":     "true",
	}
	want := []hop{
		{200, "inventory", "/stock", propagated},
		{503, "broken", "/", propagated},
	}
	if diff := cmp.Diff(want, hops); diff != "" {
		t.Errorf("upstreams (-want +got):\n%s", diff)
	}
}

func TestCallUnreachableUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	front := startEcho(t, Options{Calls: []string{"http://" + dead + "/"}, CallTimeout: 2 * time.Second})
	code, got := getJSON(t, http.DefaultClient, "http://"+front+"/", nil)
	if code != http.StatusBadGateway || len(got.Upstreams) != 1 || got.Upstreams[0].Error == "" {
		t.Errorf("status %d upstreams %+v, want 502 with one errored upstream", code, got.Upstreams)
	}
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCHealth(t *testing.T) {
	conn := dialGRPC(t, startEcho(t, Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"", GRPCService} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, resp.Status)
		}
	}
}

func TestGRPCEcho(t *testing.T) {
	upstream := startEcho(t, Options{Identity: Identity{Workload: "inventory"}})
	addr := startEcho(t, Options{
		Identity: Identity{Workload: "catalog-v2", Namespace: "shop", Replica: 1},
		Calls:    []string{"http://" + upstream + "/"},
	})
	conn := dialGRPC(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "grpc-1")
	got, err := CallGRPC(ctx, conn, map[string]any{"message": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	headers := got["headers"].(map[string]any)
	if headers["x-request-id"] != "grpc-1" {
		t.Errorf("headers = %v, want x-request-id grpc-1", headers)
	}
	ups := got["upstreams"].([]any)
	up := ups[0].(map[string]any)
	body := up["body"].(map[string]any)
	slim := map[string]any{
		"workload": got["workload"], "namespace": got["namespace"], "replica": got["replica"],
		"method": got["method"], "path": got["path"], "host": got["host"], "proto": got["proto"],
		"request": got["request"], "upstream": body["workload"],
		"upstreamRequestID": body["headers"].(map[string]any)["x-request-id"],
	}
	want := map[string]any{
		"workload": "catalog-v2", "namespace": "shop", "replica": float64(1),
		"method": "POST", "path": GRPCMethodEcho, "host": addr, "proto": "gRPC",
		"request": map[string]any{"message": "hi"}, "upstream": "inventory",
		"upstreamRequestID": "grpc-1",
	}
	if diff := cmp.Diff(want, slim); diff != "" {
		t.Errorf("echo (-want +got):\n%s", diff)
	}
}

func TestGRPCStatusAndLatency(t *testing.T) {
	conn := dialGRPC(t, startEcho(t, Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name       string
		md         []string
		req        map[string]any
		wantCode   codes.Code
		minLatency time.Duration
	}{
		{name: "ok", req: map[string]any{}, wantCode: codes.OK},
		{name: "requested status", req: map[string]any{FieldGRPCStatus: 14}, wantCode: codes.Unavailable},
		{name: "latency field", req: map[string]any{FieldLatency: "40ms"}, wantCode: codes.OK, minLatency: 40 * time.Millisecond},
		{name: "latency metadata", md: []string{HeaderLatency, "30ms"}, req: map[string]any{}, wantCode: codes.OK, minLatency: 30 * time.Millisecond},
		{name: "bad latency", req: map[string]any{FieldLatency: "soon"}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(ctx, tt.md...)
			start := time.Now()
			_, err := CallGRPC(ctx, conn, tt.req)
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if d := time.Since(start); d < tt.minLatency {
				t.Errorf("answered after %s, want at least %s", d, tt.minLatency)
			}
		})
	}
}

func TestGRPCStream(t *testing.T) {
	conn := dialGRPC(t, startEcho(t, Options{Identity: Identity{Workload: "streamer"}}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := StreamGRPC(ctx, conn, map[string]any{FieldCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	var idx []float64
	for _, m := range got {
		if m["workload"] != "streamer" {
			t.Errorf("workload = %v", m["workload"])
		}
		i, _ := m["index"].(float64) // index 0 is omitted
		idx = append(idx, i)
	}
	if diff := cmp.Diff([]float64{0, 1, 2, 3, 4}, idx); diff != "" {
		t.Errorf("indexes (-want +got):\n%s", diff)
	}
	if _, err := StreamGRPC(ctx, conn, map[string]any{FieldCount: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("count -1: %v, want InvalidArgument", err)
	}
}

func TestTCPEchoHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeTCPEcho(ctx, ln, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTCPEcho: %v", err)
		}
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	payload := strings.Repeat("skein-", 50000) // larger than socket buffers
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, payload)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(conn) // ends only if the server closes after our half-close
	if err != nil {
		t.Fatal(err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if string(got) != payload {
		t.Errorf("echoed %d bytes, want the %d sent", len(got), len(payload))
	}
}

func TestTCPEchoStopClosesConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeTCPEcho(ctx, ln, nil) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "x")
	buf := make([]byte, 1)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeTCPEcho: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTCPEcho did not stop with an open connection")
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Errorf("connection still open after stop")
	}
}

func TestLoad(t *testing.T) {
	addr := startEcho(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		url     string
		want    map[int]int
		wantErr int
	}{
		{name: "ok", url: "http://" + addr + "/", want: map[int]int{200: 6}},
		{name: "server errors", url: "http://" + addr + "/?status=503", want: map[int]int{503: 6}, wantErr: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stats, err := RunLoad(ctx, LoadOptions{URL: tt.url, RPS: 100, Count: 6})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, stats.ByStatus); diff != "" {
				t.Errorf("by status (-want +got):\n%s", diff)
			}
			if stats.Requests != 6 || stats.Errors() != tt.wantErr {
				t.Errorf("requests %d errors %d, want 6 and %d", stats.Requests, stats.Errors(), tt.wantErr)
			}
		})
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	addr := startEcho(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	stats, err := RunLoad(ctx, LoadOptions{URL: "http://" + addr + "/", RPS: 20})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Requests < 2 || stats.Requests > 10 {
		t.Errorf("%d requests in 300ms at 20 rps, want about 6", stats.Requests)
	}
}

func TestIdentityFromEnv(t *testing.T) {
	env := map[string]string{"SKEIN_WORKLOAD": "w", "SKEIN_NAMESPACE": "ns", "SKEIN_REPLICA": "3"}
	got, err := IdentityFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Identity{"w", "ns", 3}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	env["SKEIN_REPLICA"] = "x"
	if _, err := IdentityFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Errorf("SKEIN_REPLICA=x: no error")
	}
}
