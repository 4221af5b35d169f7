package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"skein.dev/skein/internal/echo"
)

// TestTrafficHTTP runs one mesh (testdata/traffic-http: web v1/v2, a mirror target,
// clients with different labels and namespaces) and a table of requests against it,
// each through a real client sidecar to real `skein echo` backends. Each case says
// what the caller gets (status, headers, Location, time taken) and what the backend saw
// (which workload, path, Host, headers, how many attempts, mirror copies). Echo keys
// its ledger by x-request-id, which retries and mirror copies keep.
func TestTrafficHTTP(t *testing.T) {
	tm := startTrafficMesh(t)
	for _, c := range trafficCases() {
		t.Run(c.name, func(t *testing.T) { tm.check(t, c) })
	}
	t.Run("weighted split 70/30", func(t *testing.T) {
		counts := tm.many(t, "client", "/split", 300, func(r result) string { return r.echo.Workload })
		v1 := 100 * float64(counts["web-v1"]) / 300
		t.Logf("split: %v", counts)
		if v1 < 60 || v1 > 80 {
			t.Errorf("web-v1 got %.1f%% of /split, want 70 ± 10", v1)
		}
	})
	t.Run("per-destination headers follow the destination", func(t *testing.T) {
		counts := tm.many(t, "client", "/dest-headers", 100, func(r result) string {
			want := strings.TrimPrefix(r.echo.Workload, "web-")
			if r.echo.Headers["x-dest"] != want || r.header.Get("X-Dest-Resp") != want {
				return fmt.Sprintf("mismatch %s saw x-dest=%q, answer x-dest-resp=%q", r.echo.Workload, r.echo.Headers["x-dest"], r.header.Get("X-Dest-Resp"))
			}
			return r.echo.Workload
		})
		if counts["web-v1"] == 0 || counts["web-v2"] == 0 || len(counts) != 2 {
			t.Errorf("want both destinations, each with its own headers; got %v", counts)
		}
	})
	t.Run("fault abort 50%", func(t *testing.T) {
		counts := tm.many(t, "client", "/abort-half", 300, func(r result) string { return fmt.Sprint(r.status) })
		aborted := 100 * float64(counts["503"]) / 300
		t.Logf("abort-half: %v", counts)
		if aborted < 38 || aborted > 62 || counts["503"]+counts["200"] != 300 {
			t.Errorf("%.1f%% aborted, want 50 ± 12 (and only 200 or 503): %v", aborted, counts)
		}
	})
	t.Run("gRPC", func(t *testing.T) { tm.checkGRPC(t) })
	t.Run("retry budget", func(t *testing.T) {
		// Ratio 0.5, no floor: the 1st request may not retry (0.5 allowed), the 2nd may
		// (1 allowed), the 3rd not (1.5), the 4th may (2).
		var got []string
		for i := range 4 {
			r := tm.do(t, "client", http.MethodGet, "http://budget:8080/budget", map[string]string{"x-echo-fail": "1"})
			got = append(got, fmt.Sprintf("%d/%d", r.status, tm.seen(t, "budget", r.id)))
			if i%2 == 0 {
				tm.wantFlag(t, r.id, "UO")
			}
		}
		if strings.Join(got, " ") != "503/1 200/2 503/1 200/2" {
			t.Errorf("status/attempts of 4 requests = %v, want [503/1 200/2 503/1 200/2]", got)
		}
	})
}

// trafficCase is one request and what must come of it. Zero fields are not checked.
type trafficCase struct {
	name   string
	from   string // calling workload: client (default), client2, other/client
	method string
	path   string // on http://web:8080 unless url is set
	url    string
	header map[string]string
	body   string

	status     int
	workload   string // backend that answered; "none" means no backend answered
	seenPath   string
	seenHost   string
	seenHdr    map[string]string // headers the backend saw; "" means absent
	respHdr    map[string]string // response headers; "" means absent
	location   string
	minTime    time.Duration
	maxTime    time.Duration
	attempt    int            // attempts the backend counted for this request id
	seen       map[string]int // request-id sightings per service (mirrors, retries)
	flag       string         // response flag in the client sidecar's access log
	bodyPrefix string
}

func trafficCases() []trafficCase {
	cors := map[string]string{"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"}
	return []trafficCase{
		// Matches.
		{name: "catch-all", path: "/anything", status: 200, workload: "web-v1", seenPath: "/anything", seenHost: "web:8080"},
		{name: "first match wins", path: "/first/x", status: 200, workload: "web-v1"},
		{name: "method POST", method: http.MethodPost, path: "/method", status: 200, workload: "web-v2"},
		{name: "method GET falls through", path: "/method", status: 200, workload: "web-v1"},
		{name: "header presence", path: "/presence", header: map[string]string{"x-present": "anything"}, status: 200, workload: "web-v2"},
		{name: "header absent", path: "/presence", status: 200, workload: "web-v1"},
		{name: "withoutHeaders absent", path: "/without", status: 200, workload: "web-v2"},
		{name: "withoutHeaders present", path: "/without", header: map[string]string{"x-block": "1"}, status: 200, workload: "web-v1"},
		{name: "queryParams exact", path: "/query?ver=2", status: 200, workload: "web-v2", seenPath: "/query?ver=2"},
		{name: "queryParams exact mismatch", path: "/query?ver=3", status: 200, workload: "web-v1"},
		{name: "queryParams regex", path: "/qre?id=42", status: 200, workload: "web-v2"},
		{name: "queryParams regex mismatch", path: "/qre?id=4x", status: 200, workload: "web-v1"},
		{name: "ignoreUriCase", path: "/caseINSENSITIVE", status: 200, workload: "web-v2"},
		{name: "header prefix", path: "/hdr", header: map[string]string{"x-user": "admin"}, status: 200, workload: "web-v2"},
		{name: "header regex", path: "/hdr", header: map[string]string{"x-user": "guest-7"}, status: 200, workload: "shadow"},
		{name: "header regex is a full match", path: "/hdr", header: map[string]string{"x-user": "guest-7x"}, status: 200, workload: "web-v1"},
		{name: "authority prefix", url: "http://web.default:8080/authz", status: 200, workload: "web-v2"},
		{name: "authority mismatch", path: "/authz", status: 200, workload: "web-v1"},
		{name: "scheme https does not match http", path: "/scheme", status: 200, workload: "web-v1"},
		{name: "sourceLabels other caller", path: "/src", status: 200, workload: "web-v1"},
		{name: "sourceLabels matching caller", from: "client2", path: "/src", status: 200, workload: "web-v2"},
		{name: "sourceNamespace other", from: "other/client", url: "http://web.default:8080/ns", status: 200, workload: "web-v2"},
		{name: "sourceNamespace default", path: "/ns", status: 200, workload: "web-v1"},
		{name: "no route", url: "http://narrow:8080/elsewhere", status: 404, workload: "none", flag: "NR"},
		{name: "narrow route", url: "http://narrow:8080/only", status: 200, workload: "web-v1"},

		// Redirects.
		{name: "redirect uri keeps query", path: "/old?a=1", status: 301, workload: "none", location: "http://web:8080/new?a=1"},
		{name: "redirect everything", path: "/moved/deep", status: 308, workload: "none", location: "https://other.example:9443/there"},
		{name: "redirect authority 302", path: "/found", status: 302, workload: "none", location: "http://elsewhere.example/found"},

		// Rewrites.
		{name: "rewrite prefix", path: "/api/v1/items?x=1", status: 200, workload: "web-v1", seenPath: "/v2/items?x=1"},
		{name: "rewrite regex", path: "/users/42/profile", status: 200, workload: "web-v1", seenPath: "/profile/42"},
		{name: "rewrite authority", path: "/authority", status: 200, workload: "web-v1", seenHost: "backend.internal"},

		// Header edits.
		{name: "request and response headers", path: "/headers", header: map[string]string{"x-set": "old", "x-add": "first", "x-remove": "gone"},
			status: 200, workload: "web-v1", seenHdr: map[string]string{"x-set": "one", "x-add": "first", "x-remove": ""},
			respHdr: map[string]string{"X-Resp-Set": "yes", "X-Resp-Add": "added"}},

		// Timeouts and retries.
		{name: "timeout", path: "/timeout", header: map[string]string{"x-echo-latency": "2s"}, status: 504, minTime: 300 * time.Millisecond, maxTime: 1500 * time.Millisecond, flag: "UT"},
		{name: "within timeout", path: "/timeout", header: map[string]string{"x-echo-latency": "10ms"}, status: 200, workload: "web-v1"},
		{name: "retry 5xx succeeds", path: "/retry-5xx", header: map[string]string{"x-echo-fail": "2"}, status: 200, workload: "web-v1", attempt: 3},
		{name: "retry 5xx exhausted", path: "/retry-5xx", header: map[string]string{"x-echo-fail": "9"}, status: 503, seen: map[string]int{"web-v1": 4}, flag: "URX"},
		{name: "retry gateway-error on 502", path: "/retry-gateway", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-status": "502"}, status: 200, attempt: 2},
		{name: "gateway-error does not retry 500", path: "/retry-gateway", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-status": "500"}, status: 500, seen: map[string]int{"web-v1": 1}},
		{name: "retriable status code", path: "/retry-codes", header: map[string]string{"x-echo-fail": "2", "x-echo-fail-status": "418"}, status: 200, attempt: 3},
		{name: "retriable-4xx is 409", path: "/retry-4xx", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-status": "409"}, status: 200, attempt: 2},
		{name: "retriable-4xx not 404", path: "/retry-4xx", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-status": "404"}, status: 404, seen: map[string]int{"web-v1": 1}},
		{name: "perTryTimeout then success", path: "/retry-per-try", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-latency": "3s"}, status: 200, attempt: 2, minTime: 200 * time.Millisecond, maxTime: 2 * time.Second},
		{name: "retries off", path: "/no-retry", header: map[string]string{"x-echo-fail": "1"}, status: 503, seen: map[string]int{"web-v1": 1}},
		{name: "default retries on 503", path: "/default-retry", header: map[string]string{"x-echo-fail": "1"}, status: 200, attempt: 2},
		{name: "default retries stop after 2", path: "/default-retry", header: map[string]string{"x-echo-fail": "5"}, status: 503, seen: map[string]int{"web-v1": 3}, flag: "URX"},
		{name: "default retries skip 500", path: "/default-retry", header: map[string]string{"x-echo-fail": "1", "x-echo-fail-status": "500"}, status: 500, seen: map[string]int{"web-v1": 1}},

		// Fault injection.
		{name: "fault delay", path: "/delay", status: 200, workload: "web-v1", minTime: 300 * time.Millisecond, flag: "DI"},
		{name: "fault abort http", path: "/abort-http", status: 418, workload: "none", seen: map[string]int{"web-v1": 0}, bodyPrefix: "fault filter abort", flag: "FI"},
		{name: "fault abort grpc", path: "/abort-grpc", header: map[string]string{"Content-Type": "application/grpc"}, status: 200, workload: "none", respHdr: map[string]string{"Grpc-Status": "14"}, flag: "FI"},

		// Mirroring.
		{name: "mirror", path: "/mirror-one", status: 200, workload: "web-v1", seen: map[string]int{"shadow": 1, "web-v1": 1}},
		{name: "mirror with a body", method: http.MethodPost, path: "/mirror-one", body: strings.Repeat("x", 100000), status: 200, workload: "web-v1", seen: map[string]int{"shadow": 1}},
		{name: "mirrors with percentages", path: "/mirrors", status: 200, workload: "web-v1", seen: map[string]int{"shadow": 1, "web-v2": 0}},

		// Delegation.
		{name: "delegate rule", path: "/team/v2/x", status: 200, workload: "web-v2", respHdr: map[string]string{"X-Root": "yes"}},
		{name: "delegate catch-all within root match", path: "/team/other", status: 200, workload: "web-v1", respHdr: map[string]string{"X-Team": "rest", "X-Root": ""}},
		{name: "delegate rule outside root match dropped", path: "/elsewhere", status: 200, workload: "web-v1", respHdr: map[string]string{"X-Root": ""}},

		// CORS.
		{name: "cors preflight", method: http.MethodOptions, path: "/cors", header: cors, status: 200, workload: "none",
			respHdr: map[string]string{"Access-Control-Allow-Origin": "https://ok.example", "Access-Control-Allow-Methods": "GET,POST",
				"Access-Control-Allow-Headers": "x-custom", "Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true"},
			seen: map[string]int{"web-v1": 0}},
		{name: "cors preflight prefix origin", method: http.MethodOptions, path: "/cors", header: map[string]string{"Origin": "https://pre.example", "Access-Control-Request-Method": "GET"},
			status: 200, workload: "none", respHdr: map[string]string{"Access-Control-Allow-Origin": "https://pre.example"}},
		{name: "cors request regex origin", path: "/cors", header: map[string]string{"Origin": "https://abc.re.example"}, status: 200, workload: "web-v1",
			respHdr: map[string]string{"Access-Control-Allow-Origin": "https://abc.re.example", "Access-Control-Expose-Headers": "x-exposed"}},
		{name: "cors origin not allowed", method: http.MethodOptions, path: "/cors", header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
			status: 200, workload: "web-v1", respHdr: map[string]string{"Access-Control-Allow-Origin": ""}},
	}
}

type trafficMesh struct {
	m       *mesh
	clients map[string]*http.Client // by "name" or "ns/name" of the calling workload
	logs    map[string]string       // access log file per calling workload
	seq     atomic.Int64
}

func startTrafficMesh(t *testing.T) *trafficMesh {
	m := startMesh(t, copyDir(t, "testdata/traffic-http"))
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	tm := &trafficMesh{m: m, clients: map[string]*http.Client{}, logs: map[string]string{}}
	for _, w := range st.Workloads {
		if len(w.Replicas) == 0 || w.Replicas[0].Outbound == "" {
			continue
		}
		key := w.Name
		if w.Namespace != "default" {
			key = w.Namespace + "/" + w.Name
		}
		proxy, _ := url.Parse("http://" + w.Replicas[0].Outbound)
		tm.clients[key] = &http.Client{
			Transport:     &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 16},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       10 * time.Second,
		}
		tm.logs[key] = w.Replicas[0].AccessLog
	}
	for _, c := range []string{"client", "client2", "other/client"} {
		if tm.clients[c] == nil {
			t.Fatalf("no sidecar for %s in %+v", c, st.Workloads)
		}
	}
	return tm
}

// echoAnswer is the part of an echo answer the cases read.
type echoAnswer struct {
	Workload string            `json:"workload"`
	Path     string            `json:"path"`
	Host     string            `json:"host"`
	Headers  map[string]string `json:"headers"`
	Attempt  int               `json:"attempt"`
}

type result struct {
	id      string
	status  int
	header  http.Header
	body    []byte
	echo    echoAnswer
	elapsed time.Duration
}

// do sends one request through a workload's sidecar with a fresh x-request-id.
func (tm *trafficMesh) do(t *testing.T, from, method, target string, hdr map[string]string) result {
	t.Helper()
	r, err := tm.sendBody(from, method, target, hdr, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (tm *trafficMesh) doBody(t *testing.T, from, method, target string, hdr map[string]string, body string) result {
	t.Helper()
	r, err := tm.sendBody(from, method, target, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (tm *trafficMesh) send(from, method, target string, hdr map[string]string) (result, error) {
	return tm.sendBody(from, method, target, hdr, "")
}

func (tm *trafficMesh) sendBody(from, method, target string, hdr map[string]string, body string) (result, error) {
	id := fmt.Sprintf("traffic-%d-%d", os.Getpid(), tm.seq.Add(1))
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return result{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Request-Id", id)
	start := time.Now()
	resp, err := tm.clients[from].Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s via %s: %w", method, target, from, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := result{id: id, status: resp.StatusCode, header: resp.Header, body: answer, elapsed: time.Since(start)}
	_ = json.Unmarshal(answer, &r.echo)
	return r, nil
}

// seenURL reaches one backend's /echo/seen through the client sidecar.
var seenURL = map[string]string{
	"web-v1": "http://web:8080/echo/seen",
	"web-v2": "http://web:8080/echo/seen", // with x-subset: v2
	"shadow": "http://shadow:8080/echo/seen",
}

// seen asks a backend how many requests with id it answered.
func (tm *trafficMesh) seen(t *testing.T, backend, id string) int {
	t.Helper()
	target := seenURL[backend]
	if backend == "budget" {
		target = seenURL["web-v1"] // budget is another name for web v1
	}
	hdr := map[string]string{}
	if backend == "web-v2" {
		hdr["x-subset"] = "v2"
	}
	r := tm.do(t, "client", http.MethodGet, target+"?id="+url.QueryEscape(id), hdr)
	var s struct {
		Count int `json:"count"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &s) != nil {
		t.Fatalf("seen %s: %d %s", backend, r.status, r.body)
	}
	return s.Count
}

// wantFlag waits for the client sidecar's access log line of a request and checks its
// response flags.
func (tm *trafficMesh) wantFlag(t *testing.T, id, flag string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if flags, ok := accessLogFlags(tm.logs["client"], id); ok {
			if !strings.Contains(","+flags+",", ","+flag+",") {
				t.Errorf("response_flags %q, want %s", flags, flag)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no access log line for request %s in %s", id, tm.logs["client"])
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func accessLogFlags(path, id string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			ID    string `json:"x_request_id"`
			Flags string `json:"response_flags"`
			Dir   string `json:"direction"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.ID == id && rec.Dir != "inbound" {
			return rec.Flags, true
		}
	}
	return "", false
}

func (tm *trafficMesh) check(t *testing.T, c trafficCase) {
	from, method, target := c.from, c.method, c.url
	if from == "" {
		from = "client"
	}
	if method == "" {
		method = http.MethodGet
	}
	if target == "" {
		target = "http://web:8080" + c.path
	}
	r := tm.doBody(t, from, method, target, c.header, c.body)
	if r.status != c.status {
		t.Fatalf("status %d, want %d; body %s", r.status, c.status, r.body)
	}
	switch c.workload {
	case "":
	case "none":
		if r.echo.Workload != "" {
			t.Errorf("answered by backend %s, want the proxy to answer", r.echo.Workload)
		}
	default:
		if r.echo.Workload != c.workload {
			t.Errorf("backend %q, want %q (body %s)", r.echo.Workload, c.workload, r.body)
		}
	}
	if c.seenPath != "" && r.echo.Path != c.seenPath {
		t.Errorf("backend saw path %q, want %q", r.echo.Path, c.seenPath)
	}
	if c.seenHost != "" && r.echo.Host != c.seenHost {
		t.Errorf("backend saw Host %q, want %q", r.echo.Host, c.seenHost)
	}
	for k, want := range c.seenHdr {
		if got := r.echo.Headers[k]; got != want {
			t.Errorf("backend saw %s=%q, want %q", k, got, want)
		}
	}
	for k, want := range c.respHdr {
		if got := r.header.Get(k); got != want {
			t.Errorf("response %s=%q, want %q", k, got, want)
		}
	}
	if c.location != "" && r.header.Get("Location") != c.location {
		t.Errorf("Location %q, want %q", r.header.Get("Location"), c.location)
	}
	if c.minTime > 0 && r.elapsed < c.minTime {
		t.Errorf("took %v, want at least %v", r.elapsed, c.minTime)
	}
	if c.maxTime > 0 && r.elapsed > c.maxTime {
		t.Errorf("took %v, want at most %v", r.elapsed, c.maxTime)
	}
	if c.attempt != 0 && r.echo.Attempt != c.attempt {
		t.Errorf("backend counted attempt %d, want %d", r.echo.Attempt, c.attempt)
	}
	if c.bodyPrefix != "" && !strings.HasPrefix(string(r.body), c.bodyPrefix) {
		t.Errorf("body %q, want it to start with %q", r.body, c.bodyPrefix)
	}
	for backend, want := range c.seen {
		got := tm.seen(t, backend, r.id)
		if got < want {
			// Mirror copies are sent in the background: give them a moment.
			deadline := time.Now().Add(3 * time.Second)
			for got < want && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				got = tm.seen(t, backend, r.id)
			}
		}
		if got != want {
			t.Errorf("%s saw request %s %d times, want %d", backend, r.id, got, want)
		}
	}
	if c.flag != "" {
		tm.wantFlag(t, r.id, c.flag)
	}
}

// many sends n requests (8 at a time) and counts them by key.
func (tm *trafficMesh) many(t *testing.T, from, path string, n int, key func(result) string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				r, err := tm.send(from, http.MethodGet, "http://web:8080"+path, nil)
				k := "error"
				if err == nil {
					k = key(r)
				}
				mu.Lock()
				counts[k]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts
}

// checkGRPC calls web's gRPC port with grpc-go through the client sidecar's upstream
// port: retries on UNAVAILABLE (read from trailers-only answers) and a gRPC fault abort.
func (tm *trafficMesh) checkGRPC(t *testing.T) {
	env := tm.m.execEnv("client")
	addr := net.JoinHostPort(env["WEB_SERVICE_HOST"], env["WEB_SERVICE_PORT_GRPC"])
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func(id string, req map[string]any, md ...string) (map[string]any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, append([]string{"x-request-id", id}, md...)...)
		return echo.CallGRPC(ctx, conn, req)
	}
	id := fmt.Sprintf("grpc-%d-1", os.Getpid())
	out, err := call(id, map[string]any{}, "x-echo-fail", "2")
	if err != nil || out["attempt"] != float64(3) || out["workload"] != "web-v1" {
		t.Errorf("UNAVAILABLE twice then OK: got %v, %v; want the 3rd attempt's answer", out, err)
	}
	id = fmt.Sprintf("grpc-%d-2", os.Getpid())
	if _, err := call(id, map[string]any{}, "x-echo-fail", "9"); status.Code(err) != codes.Unavailable {
		t.Errorf("retries exhausted: %v, want UNAVAILABLE", err)
	}
	if n := tm.seen(t, "web-v1", id); n != 3 {
		t.Errorf("backend saw %d attempts, want 3 (1 + 2 retries)", n)
	}
	tm.wantFlag(t, id, "URX")
	id = fmt.Sprintf("grpc-%d-3", os.Getpid())
	if _, err := call(id, map[string]any{}, "x-echo-fail", "1", "x-echo-fail-grpc-status", "13"); status.Code(err) != codes.Internal {
		t.Errorf("INTERNAL is not retried under retryOn unavailable: %v", err)
	}
	id = fmt.Sprintf("grpc-%d-4", os.Getpid())
	if _, err := call(id, map[string]any{}, "x-fault", "abort"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("fault abort: %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := tm.seen(t, "web-v1", id); n != 0 {
		t.Errorf("a fault abort must not reach the backend (saw %d)", n)
	}
	tm.wantFlag(t, id, "FI")
}
