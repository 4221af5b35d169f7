package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// TestTrafficPolicy runs DestinationRule traffic policies through real sidecars to
// `skein echo` backends (testdata/traffic-cluster): load balancers, consistent hash,
// subset and port overrides, outlier ejection and return, circuit breakers (503 + UO),
// and locality failover. Requests go from this test to the client workload's sidecar
// (its explicit HTTP proxy port), which is where the policies apply. The cases run in
// order on one mesh: the outlier cases depend on the time since the ejection before.
func TestTrafficPolicy(t *testing.T) {
	m := startMesh(t, copyDir(t, "testdata/traffic-cluster"))
	tc := newTrafficClient(t, m)
	cases := []struct {
		name string
		run  func(t *testing.T, tc *trafficClient)
	}{
		{"round robin is even", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 300, 1, "http://rr:8080/")
			for _, b := range []string{"rr-a", "rr-b", "rr-c"} {
				if n := got.backends[b]; n < 98 || n > 102 {
					t.Errorf("%s got %d of 300, want 100 (%v)", b, n, got)
				}
			}
		}},
		{"random spreads over every endpoint", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 600, 4, "http://rr:8080/random")
			for _, b := range []string{"rr-a", "rr-b", "rr-c"} {
				if n := got.backends[b]; n < 120 {
					t.Errorf("%s got %d of 600 under RANDOM, want about 200 (%v)", b, n, got)
				}
			}
		}},
		{"least request prefers the idle endpoint", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 200, 8, "http://lr:8080/")
			if share := got.share("lat-fast"); share < 75 {
				t.Errorf("fast endpoint got %.0f%% under load, want most (%v)", share, got)
			}
		}},
		{"least request alone is blind to latency one request at a time", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 60, 1, "http://lr:8080/")
			if n := got.backends["lat-slow"]; n < 12 || n > 48 {
				t.Errorf("slow endpoint got %d of 60 sequential requests, want about 30 (%v)", n, got)
			}
		}},
		{"peak EWMA prefers the fast endpoint one request at a time", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 60, 1, "http://ewma:8080/")
			if n := got.backends["lat-fast"]; n < 54 {
				t.Errorf("fast endpoint got %d of 60 under peak EWMA, want at least 54 (%v)", n, got)
			}
		}},
		{"header hash is sticky", func(t *testing.T, tc *trafficClient) {
			for i := range 10 {
				tc.sticky(t, 5, "http://hash:8080/header", "x-user", fmt.Sprint("user-", i))
			}
		}},
		{"header hash spreads users", func(t *testing.T, tc *trafficClient) {
			seen := map[string]bool{}
			for i := range 30 {
				seen[tc.sticky(t, 1, "http://hash:8080/header", "x-user", fmt.Sprint("spread-", i))] = true
			}
			if len(seen) < 2 {
				t.Errorf("30 users all hashed to %v", seen)
			}
		}},
		{"hash cookie is set when absent", func(t *testing.T, tc *trafficClient) {
			r := tc.get(t, "http://hash:8080/cookie")
			set := r.header.Get("Set-Cookie")
			if r.status != 200 || !strings.HasPrefix(set, `skein-sticky="`) || !strings.Contains(set, "Max-Age=3600; Path=/; HttpOnly") {
				t.Fatalf("status %d, Set-Cookie %q", r.status, set)
			}
			if r2 := tc.get(t, "http://hash:8080/cookie", "Cookie", strings.Split(set, ";")[0]); r2.header.Get("Set-Cookie") != "" {
				t.Errorf("cookie set again although the request carried it: %q", r2.header.Get("Set-Cookie"))
			}
		}},
		{"hash cookie is sticky", func(t *testing.T, tc *trafficClient) {
			seen := map[string]bool{}
			for range 12 {
				r := tc.get(t, "http://hash:8080/cookie")
				cookie := strings.Split(r.header.Get("Set-Cookie"), ";")[0]
				b := tc.sticky(t, 5, "http://hash:8080/cookie", "Cookie", cookie)
				if b != r.backend {
					t.Errorf("first answer from %s, then %s with the generated cookie", r.backend, b)
				}
				seen[b] = true
			}
			if len(seen) < 2 {
				t.Errorf("12 generated cookies all went to %v", seen)
			}
		}},
		{"query parameter hash is sticky", func(t *testing.T, tc *trafficClient) {
			seen := map[string]bool{}
			for i := range 15 {
				seen[tc.sticky(t, 4, fmt.Sprintf("http://hash:8080/query?user=u%d&x=%d", i, i))] = true
			}
			if len(seen) < 2 {
				t.Errorf("15 users all hashed to %v", seen)
			}
		}},
		{"source IP hash is sticky", func(t *testing.T, tc *trafficClient) {
			tc.sticky(t, 20, "http://hash:8080/source")
		}},
		{"maglev is sticky", func(t *testing.T, tc *trafficClient) {
			seen := map[string]bool{}
			for i := range 15 {
				seen[tc.sticky(t, 4, "http://hash:8080/maglev", "x-user", fmt.Sprint("m-", i))] = true
			}
			if len(seen) < 2 {
				t.Errorf("15 users all hashed to %v", seen)
			}
		}},
		{"a subset without a policy inherits the top-level hash", func(t *testing.T, tc *trafficClient) {
			tc.sticky(t, 30, "http://sub:8080/", "x-user", "alice")
		}},
		{"a subset policy overrides the top-level load balancer", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 30, 1, "http://sub:8080/rr", "x-user", "alice")
			for _, b := range []string{"rr-a", "rr-b", "rr-c"} {
				if n := got.backends[b]; n < 9 || n > 11 {
					t.Errorf("%s got %d of 30 with the subset's ROUND_ROBIN, want 10 (%v)", b, n, got)
				}
			}
		}},
		{"outlier detection ejects after 3 consecutive 5xx", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 30, 1, "http://flaky:8080/")
			if got.status[503] != 3 || got.backends["flaky-good"] != 27 {
				t.Fatalf("want exactly 3 answers 503 (then flaky-bad ejected) and 27 from flaky-good, got %v", got)
			}
			tc.ejectedAt = time.Now()
		}},
		{"the ejected endpoint returns after baseEjectionTime", func(t *testing.T, tc *trafficClient) {
			if got := tc.spread(t, 10, 1, "http://flaky:8080/"); got.status[503] != 0 {
				t.Fatalf("flaky-bad answered within its ejection: %v", got)
			}
			back := tc.waitFor503(t, "http://flaky:8080/", 6*time.Second)
			// Back at the first 1s interval tick after 2s.
			if d := back.Sub(tc.ejectedAt); d < 1900*time.Millisecond || d > 3500*time.Millisecond {
				t.Fatalf("flaky-bad back %v after its ejection, want 2s to 3s", d)
			}
			// Two more errors in a row (the first was seen above) eject it again, before
			// any interval passes in service.
			if got := tc.spread(t, 10, 1, "http://flaky:8080/"); got.status[503] != 2 {
				t.Fatalf("want 2 more answers 503 before the second ejection, got %v", got)
			}
			tc.ejectedAt = time.Now()
		}},
		{"the second ejection lasts twice as long", func(t *testing.T, tc *trafficClient) {
			time.Sleep(time.Until(tc.ejectedAt.Add(2500 * time.Millisecond)))
			if got := tc.spread(t, 10, 1, "http://flaky:8080/"); got.status[503] != 0 {
				t.Fatalf("flaky-bad back 2.5s into its second (4s) ejection: %v", got)
			}
			back := tc.waitFor503(t, "http://flaky:8080/", 5*time.Second)
			if d := back.Sub(tc.ejectedAt); d < 3900*time.Millisecond || d > 5500*time.Millisecond {
				t.Fatalf("flaky-bad back %v after its second ejection, want 4s to 5s", d)
			}
		}},
		{"consecutive gateway errors eject (subset outlier policy)", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 20, 1, "http://flaky:8080/gateway")
			if got.status[503] != 2 || got.backends["flaky-good"] != 18 {
				t.Fatalf("want exactly 2 answers 503 then flaky-good only, got %v", got)
			}
		}},
		{"pool overflow answers 503 with UO", func(t *testing.T, tc *trafficClient) {
			rs := tc.concurrent(t, 6, "http://pool:8080/")
			var ok, overflow int
			for _, r := range rs {
				switch {
				case r.status == 200:
					ok++
				case r.status == 503 && r.header.Get("X-Envoy-Overloaded") == "true":
					overflow++
				default:
					t.Errorf("unexpected answer %d %q", r.status, r.body)
				}
			}
			// One connection plus one pending request: two served, the rest refused.
			if ok != 2 || overflow != 4 {
				t.Errorf("6 concurrent requests: %d served, %d overflowed; want 2 and 4", ok, overflow)
			}
		}},
		{"UO is in the access log and the response_flags label", func(t *testing.T, tc *trafficClient) {
			if n := tc.accessLogCount(t, "UO", 503); n < 4 {
				t.Errorf("client access log has %d lines with UO and 503, want at least 4", n)
			}
			labels := map[string]string{"reporter": "source", "response_code": "503", "response_flags": "UO", "destination_service": "pool.default.svc.cluster.local"}
			if n := promCounter(t, tc.replica.Metrics, "istio_requests_total", labels); n < 4 {
				t.Errorf("istio_requests_total%v = %v, want at least 4", labels, n)
			}
		}},
		{"port-level pool: HTTP/2 upgrade bounded by http2MaxRequests", func(t *testing.T, tc *trafficClient) {
			rs := tc.concurrent(t, 5, "http://pool:9090/")
			var ok, overflow int
			for _, r := range rs {
				switch r.status {
				case 200:
					ok++
					if r.proto != "HTTP/2.0" {
						t.Errorf("port 9090 reached the app over %s, want HTTP/2.0 (h2UpgradePolicy UPGRADE)", r.proto)
					}
				case 503:
					overflow++
				}
			}
			if ok != 2 || overflow != 3 {
				t.Errorf("5 concurrent requests on 9090: %d served, %d overflowed; want 2 and 3 (no pending queue)", ok, overflow)
			}
			if r := tc.get(t, "http://pool:8080/"); r.proto != "HTTP/1.1" {
				t.Errorf("port 8080 reached the app over %s, want HTTP/1.1", r.proto)
			}
		}},
		{"TCP connections beyond maxConnections are closed with UO", func(t *testing.T, tc *trafficClient) {
			addr := "127.0.0.1:" + tc.m.execEnv("client")["TCPE_SERVICE_PORT"]
			first, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			_ = first.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(first, "one\n"); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(first)
			if line, err := r.ReadString('\n'); err != nil || line != "one\n" {
				t.Fatalf("first connection: %q %v", line, err)
			}
			// The first connection is open: a second one is refused.
			if got, err := tcpEcho(addr, "two"); err == nil && got == "two" {
				t.Fatal("second connection echoed while the first holds the only slot")
			}
			first.Close()
			var got string
			for range 50 { // the slot frees when the sidecar sees the close
				if got, err = tcpEcho(addr, "three"); err == nil && got == "three" {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != "three" {
				t.Fatalf("after the first closed: %q %v", got, err)
			}
			if n := tc.accessLogCount(t, "UO", 0); n < 1 {
				t.Errorf("no TCP access log line with UO")
			}
		}},
		{"no healthy upstream answers 503 with UH", func(t *testing.T, tc *trafficClient) {
			if r := tc.get(t, "http://nobody:8080/"); r.status != 503 {
				t.Fatalf("status %d, want 503", r.status)
			}
			if n := tc.accessLogCount(t, "UH", 503); n < 1 {
				t.Errorf("no access log line with UH")
			}
		}},
		{"locality: traffic stays in the client's zone", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 50, 2, "http://geo:8080/")
			if got.backends["geo-local"] != 50 {
				t.Errorf("want all 50 on geo-local (r1/z1), got %v", got)
			}
		}},
		{"locality failover: same region's other zone first", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 30, 1, "http://geofail:8080/")
			if got.status[503] != 1 || got.backends["geo-zone"] != 29 {
				t.Errorf("want one 503 from geo-local-bad, then all on geo-zone (r1/z2), got %v", got)
			}
		}},
		{"locality failover: the failover region before other regions", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 30, 1, "http://georegion:8080/")
			if got.status[503] != 2 || got.backends["geo-far"] != 28 {
				t.Errorf("want two 503 (local and zone ejected), then all on geo-far (r3, failover r1→r3) and none on geo-remote (r2), got %v", got)
			}
		}},
		{"locality distribute: 80/20", func(t *testing.T, tc *trafficClient) {
			got := tc.spread(t, 500, 4, "http://geodist:8080/")
			if local := got.share("geo-local"); math.Abs(local-80) > 8 || got.backends["geo-zone"]+got.backends["geo-far"] != 0 {
				t.Errorf("want about 80%% on geo-local, 20%% on geo-remote and none elsewhere, got %v", got)
			}
		}},
	}
	for _, c := range cases {
		if !t.Run(c.name, func(t *testing.T) { c.run(t, tc) }) {
			t.Logf("mesh logs:\n%s", m.logs())
		}
	}
}

// trafficClient sends requests through the client workload's sidecar.
type trafficClient struct {
	m         *mesh
	replica   api.Replica
	http      *http.Client
	ejectedAt time.Time
}

func newTrafficClient(t *testing.T, m *mesh) *trafficClient {
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	tc := &trafficClient{m: m}
	for _, w := range st.Workloads {
		if w.Name == "client" && len(w.Replicas) > 0 {
			tc.replica = w.Replicas[0]
		}
	}
	if tc.replica.Outbound == "" {
		t.Fatalf("client sidecar has no outbound proxy address: %+v", tc.replica)
	}
	proxy, _ := url.Parse("http://" + tc.replica.Outbound)
	tc.http = &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 16},
		Timeout:   15 * time.Second,
	}
	return tc
}

type tcAnswer struct {
	status  int
	backend string
	proto   string
	header  http.Header
	body    string
}

func (tc *trafficClient) get(t *testing.T, target string, header ...string) tcAnswer {
	t.Helper()
	a, err := tc.do(target, header...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// do is get for other goroutines: it returns the error instead of failing the test.
func (tc *trafficClient) do(target string, header ...string) (tcAnswer, error) {
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		return tcAnswer{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := tc.http.Do(req)
	if err != nil {
		return tcAnswer{}, fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := tcAnswer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	var echo struct {
		Workload string `json:"workload"`
		Proto    string `json:"proto"`
	}
	if resp.StatusCode == 200 && json.Unmarshal(body, &echo) == nil {
		a.backend, a.proto = echo.Workload, echo.Proto
	}
	return a, nil
}

type spreadResult struct {
	requests int
	status   map[int]int
	backends map[string]int
}

func (s spreadResult) share(backend string) float64 {
	return 100 * float64(s.backends[backend]) / float64(max(s.requests, 1))
}

func (s spreadResult) String() string {
	return fmt.Sprintf("%d requests, status %v, backends %v", s.requests, s.status, s.backends)
}

// spread sends n requests with c workers and counts answers by status and backend.
// With c = 1 the requests are strictly sequential.
func (tc *trafficClient) spread(t *testing.T, n, c int, target string, header ...string) spreadResult {
	t.Helper()
	res := spreadResult{requests: n, status: map[int]int{}, backends: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				a, err := tc.do(target, header...)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				res.status[a.status]++
				if a.backend != "" {
					res.backends[a.backend]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// sticky sends n requests and fails unless one backend answered them all; it
// returns that backend.
func (tc *trafficClient) sticky(t *testing.T, n int, target string, header ...string) string {
	t.Helper()
	got := tc.spread(t, n, 1, target, header...)
	if len(got.backends) != 1 || got.status[200] != n {
		t.Fatalf("%s %v: want one backend for all %d requests, got %v", target, header, n, got)
	}
	for b := range got.backends {
		return b
	}
	return ""
}

// concurrent sends n requests at once and returns every answer.
func (tc *trafficClient) concurrent(t *testing.T, n int, target string) []tcAnswer {
	t.Helper()
	out := make([]tcAnswer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			if out[i], err = tc.do(target); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// waitFor503 sends one request every 50ms until one is answered 503, and returns when.
func (tc *trafficClient) waitFor503(t *testing.T, target string, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if a := tc.get(t, target); a.status == 503 {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no answer 503 from %s within %v", target, limit)
	return time.Time{}
}

// accessLogCount counts the client sidecar's access log lines with a flag and status.
func (tc *trafficClient) accessLogCount(t *testing.T, flag string, status int) int {
	t.Helper()
	// The log is written in batches every 100 ms: wait until lines are there and one
	// more read finds no new ones.
	n, prev := 0, -1
	for range 30 {
		data, err := os.ReadFile(tc.replica.AccessLog)
		if err != nil {
			t.Fatalf("client access log: %v", err)
		}
		n = 0
		for _, line := range strings.Split(string(data), "\n") {
			var rec streaminfo.Record
			if json.Unmarshal([]byte(line), &rec) == nil && rec.ResponseCode == status && strings.Contains(rec.ResponseFlags, flag) {
				n++
			}
		}
		if n > 0 && n == prev {
			return n
		}
		prev = n
		time.Sleep(150 * time.Millisecond)
	}
	return n
}
