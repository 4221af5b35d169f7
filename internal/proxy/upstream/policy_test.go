package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// fakeClock is an injected clock for ejection and EWMA tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

type epSpec struct {
	addr     string
	priority uint32
	locality string
	lweight  uint32
}

func policyCluster(clk *fakeClock, lb resource.LBPolicy, p resource.ClusterPolicy, specs ...epSpec) *Cluster {
	eps := &resource.Endpoints{ClusterName: "c"}
	for _, s := range specs {
		eps.Endpoints = append(eps.Endpoints, resource.Endpoint{Address: s.addr, Healthy: true, Weight: 1, Priority: s.priority, Locality: s.locality, LocalityWeight: s.lweight})
	}
	return NewClusterWith(&resource.Cluster{Name: "c", LB: lb, Policy: p}, eps, nil, Options{Now: clk.Now})
}

func addrs(n int) []epSpec {
	out := make([]epSpec, n)
	for i := range out {
		out[i] = epSpec{addr: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return out
}

func outlier(consecutive uint32) *resource.OutlierDetection {
	return &resource.OutlierDetection{
		Consecutive5xx: consecutive, EnforcingConsecutive5xx: 100,
		ConsecutiveGateway: 5, EnforcingConsecutiveGateway: 0,
		Interval: time.Second, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 100,
	}
}

func byAddr(c *Cluster, addr string) *Endpoint {
	for _, e := range c.Endpoints() {
		if e.Address == addr {
			return e
		}
	}
	panic("no endpoint " + addr)
}

func countPicks(c *Cluster, n int, r Request) map[string]int {
	got := map[string]int{}
	for range n {
		got[c.Choose(r).Address]++
	}
	return got
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	clk := newClock()
	c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: outlier(3)}, addrs(2)...)
	bad := byAddr(c, "10.0.0.1:80")
	c.ObserveResponse(bad, 503, 0)
	c.ObserveResponse(bad, 500, 0)
	c.ObserveResponse(bad, 200, 0) // a success breaks the run
	c.ObserveResponse(bad, 503, 0)
	c.ObserveResponse(bad, 503, 0)
	if c.Ejected(bad) {
		t.Fatal("ejected after a broken run of errors")
	}
	c.ObserveResponse(bad, 502, 0)
	if !c.Ejected(bad) {
		t.Fatal("not ejected after 3 consecutive 5xx")
	}
	if got := countPicks(c, 20, Request{}); got[bad.Address] != 0 {
		t.Fatalf("ejected endpoint picked: %v", got)
	}
	// Back after baseEjectionTime (10s), at an interval tick.
	clk.Advance(9500 * time.Millisecond)
	if !c.Ejected(bad) {
		t.Fatal("returned before baseEjectionTime")
	}
	clk.Advance(500 * time.Millisecond)
	if c.Ejected(bad) {
		t.Fatal("still ejected after baseEjectionTime")
	}
	if got := countPicks(c, 20, Request{}); got[bad.Address] == 0 {
		t.Fatalf("returned endpoint never picked: %v", got)
	}
	// A second ejection right away lasts twice as long.
	for range 3 {
		c.ObserveLocalFailure(bad, 0)
	}
	clk.Advance(19 * time.Second)
	if !c.Ejected(bad) {
		t.Fatal("second ejection shorter than 2 × base")
	}
	clk.Advance(time.Second)
	if c.Ejected(bad) {
		t.Fatal("second ejection longer than 2 × base")
	}
	// After a long healthy spell the multiplier decays back to 1.
	clk.Advance(time.Minute)
	for range 3 {
		c.ObserveResponse(bad, 500, 0)
	}
	clk.Advance(10 * time.Second)
	if c.Ejected(bad) {
		t.Fatal("multiplier did not decay while the host was healthy")
	}
}

func TestOutlierGatewayErrors(t *testing.T) {
	clk := newClock()
	od := outlier(0)
	od.ConsecutiveGateway, od.EnforcingConsecutiveGateway = 2, 100
	c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: od}, addrs(2)...)
	e := byAddr(c, "10.0.0.1:80")
	c.ObserveResponse(e, 500, 0) // not a gateway error
	c.ObserveResponse(e, 504, 0)
	if c.Ejected(e) {
		t.Fatal("500 counted as a gateway error")
	}
	c.ObserveResponse(e, 503, 0)
	if !c.Ejected(e) {
		t.Fatal("not ejected after 2 gateway errors")
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	clk := newClock()
	od := outlier(1)
	od.MaxEjectionPercent = 50
	c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: od}, addrs(3)...)
	for _, e := range c.Endpoints() {
		c.ObserveResponse(e, 500, 0)
	}
	n := 0
	for _, e := range c.Endpoints() {
		if c.Ejected(e) {
			n++
		}
	}
	// One of three (33%) is allowed; two (66%) would pass 50%.
	if n != 1 {
		t.Fatalf("%d of 3 ejected with maxEjectionPercent 50, want 1", n)
	}
	// With 10%, one host may still be ejected (Envoy ejects at least one).
	od2 := outlier(1)
	od2.MaxEjectionPercent = 10
	c2 := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: od2}, addrs(3)...)
	c2.ObserveResponse(c2.Endpoints()[0], 500, 0)
	if !c2.Ejected(c2.Endpoints()[0]) {
		t.Fatal("the first ejection must always be allowed")
	}
}

func TestPanicThreshold(t *testing.T) {
	clk := newClock()
	for _, tc := range []struct {
		name      string
		threshold float64
		wantBad   bool
	}{
		{"panic disabled (Istio minHealthPercent 0)", 0, false},
		{"panic at 60%: 2 of 4 healthy is panic", 60, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: outlier(1), PanicThreshold: tc.threshold}, addrs(4)...)
			c.ObserveResponse(byAddr(c, "10.0.0.1:80"), 500, 0)
			c.ObserveResponse(byAddr(c, "10.0.0.2:80"), 500, 0)
			got := countPicks(c, 200, Request{})
			bad := got["10.0.0.1:80"] + got["10.0.0.2:80"]
			if (bad > 0) != tc.wantBad {
				t.Fatalf("picks %v: ejected hosts used = %v, want %v", got, bad > 0, tc.wantBad)
			}
		})
	}
}

func TestPriorityFailover(t *testing.T) {
	clk := newClock()
	specs := []epSpec{{addr: "p0a:80"}, {addr: "p0b:80"}, {addr: "p0c:80"}, {addr: "p0d:80"}, {addr: "p1:80", priority: 1}, {addr: "p2:80", priority: 2}}
	c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{Outlier: outlier(1)}, specs...)
	share := func() (p0, p1, p2 float64) {
		got := countPicks(c, 4000, Request{})
		p0 = float64(got["p0a:80"]+got["p0b:80"]+got["p0c:80"]+got["p0d:80"]) / 40
		return p0, float64(got["p1:80"]) / 40, float64(got["p2:80"]) / 40
	}
	if p0, _, _ := share(); p0 != 100 {
		t.Fatalf("healthy P0 got %.1f%%, want 100%%", p0)
	}
	// 3 of 4 healthy: 140% × 75% ≥ 100%, P0 keeps everything (overprovisioning).
	c.ObserveResponse(byAddr(c, "p0a:80"), 500, 0)
	if p0, _, _ := share(); p0 != 100 {
		t.Fatalf("P0 at 75%% health got %.1f%%, want 100%%", p0)
	}
	// 2 of 4: health 70, P1 takes the other 30.
	c.ObserveResponse(byAddr(c, "p0b:80"), 500, 0)
	if p0, p1, _ := share(); math.Abs(p0-70) > 5 || math.Abs(p1-30) > 5 {
		t.Fatalf("P0/P1 = %.1f/%.1f, want 70/30", p0, p1)
	}
	// P0 and P1 out: P2 takes everything.
	c.ObserveResponse(byAddr(c, "p0c:80"), 500, 0)
	c.ObserveResponse(byAddr(c, "p0d:80"), 500, 0)
	c.ObserveResponse(byAddr(c, "p1:80"), 500, 0)
	if _, _, p2 := share(); p2 != 100 {
		t.Fatalf("P2 got %.1f%%, want 100%% when P0 and P1 are ejected", p2)
	}
}

func TestLocalityWeighted(t *testing.T) {
	clk := newClock()
	specs := []epSpec{{addr: "a:80", locality: "r/z1/", lweight: 80}, {addr: "b:80", locality: "r/z2/", lweight: 20}}
	c := policyCluster(clk, resource.LBRoundRobin, resource.ClusterPolicy{LocalityWeighted: true}, specs...)
	got := countPicks(c, 5000, Request{})
	if a := float64(got["a:80"]) / 50; math.Abs(a-80) > 4 {
		t.Fatalf("locality z1 got %.1f%%, want 80%%", a)
	}
}

func TestRingHashStickyAndMinimalMoves(t *testing.T) {
	clk := newClock()
	for _, lb := range []resource.LBPolicy{resource.LBRingHash, resource.LBMaglev} {
		c := policyCluster(clk, lb, resource.ClusterPolicy{Outlier: outlier(1), MaglevTableSize: 251}, addrs(5)...)
		first := map[uint64]string{}
		hits := map[string]int{}
		for k := range uint64(1000) {
			h := HashString(fmt.Sprint("user-", k))
			a := c.Choose(Request{Hash: h, HasHash: true}).Address
			if b := c.Choose(Request{Hash: h, HasHash: true}).Address; a != b {
				t.Fatalf("lb %v: key %d went to %s then %s", lb, k, a, b)
			}
			first[h] = a
			hits[a]++
		}
		for addr, n := range hits {
			if n < 100 || n > 300 {
				t.Errorf("lb %v: %s got %d of 1000 keys, want about 200", lb, addr, n)
			}
		}
		// Ejecting one host moves only its keys.
		gone := byAddr(c, "10.0.0.3:80")
		c.ObserveResponse(gone, 500, 0)
		for h, a := range first {
			b := c.Choose(Request{Hash: h, HasHash: true}).Address
			if a != gone.Address && a != b {
				t.Fatalf("lb %v: key on healthy %s moved to %s", lb, a, b)
			}
			if b == gone.Address {
				t.Fatalf("lb %v: key sent to ejected host", lb)
			}
		}
	}
}

func TestRandomSpreads(t *testing.T) {
	c := policyCluster(newClock(), resource.LBRandom, resource.ClusterPolicy{}, addrs(3)...)
	for a, n := range countPicks(c, 3000, Request{}) {
		if n < 800 || n > 1200 {
			t.Errorf("%s got %d of 3000", a, n)
		}
	}
}

func TestPeakEWMAPrefersFast(t *testing.T) {
	clk := newClock()
	c := policyCluster(clk, resource.LBLeastRequest, resource.ClusterPolicy{PeakEWMA: &resource.PeakEWMA{Decay: 10 * time.Second, DefaultRTT: 30 * time.Millisecond}}, addrs(2)...)
	slow, fast := byAddr(c, "10.0.0.1:80"), byAddr(c, "10.0.0.2:80")
	c.ObserveResponse(slow, 200, 200*time.Millisecond)
	c.ObserveResponse(fast, 200, 5*time.Millisecond)
	if got := countPicks(c, 100, Request{}); got[fast.Address] != 100 {
		t.Fatalf("picks %v, want all on the fast endpoint", got)
	}
	// Peak sensitivity: one slow answer makes the fast endpoint look slow at once...
	c.ObserveResponse(fast, 200, 400*time.Millisecond)
	if d, _ := fast.EWMA(); d != 400*time.Millisecond {
		t.Fatalf("ewma after a peak = %v, want 400ms", d)
	}
	// ...and fast samples bring it down with time.
	clk.Advance(20 * time.Second)
	c.ObserveResponse(fast, 200, 5*time.Millisecond)
	if d, _ := fast.EWMA(); d > 60*time.Millisecond {
		t.Fatalf("ewma 20s (2 decay constants) after the peak = %v, want under 60ms", d)
	}
	// Load counts too: many requests in flight on the fast endpoint shift picks.
	for range 100 {
		fast.Begin()
	}
	if got := countPicks(c, 100, Request{}); got[slow.Address] != 100 {
		t.Fatalf("picks %v, want all on the idle endpoint", got)
	}
}

func TestSlowStart(t *testing.T) {
	clk := newClock()
	p := resource.ClusterPolicy{SlowStart: &resource.SlowStart{Window: 100 * time.Second, Aggression: 1, MinWeightPercent: 10}}
	def := &resource.Cluster{Name: "c", LB: resource.LBRoundRobin, Policy: p}
	one := &resource.Endpoints{Endpoints: []resource.Endpoint{{Address: "old:80", Healthy: true, Weight: 1}}}
	c := NewClusterWith(def, one, nil, Options{Now: clk.Now})
	two := &resource.Endpoints{Endpoints: []resource.Endpoint{{Address: "old:80", Healthy: true, Weight: 1}, {Address: "new:80", Healthy: true, Weight: 1}}}
	c = NewClusterWith(def, two, c, Options{Now: clk.Now})
	clk.Advance(25 * time.Second)
	got := countPicks(c, 5000, Request{})
	// new weighs 0.25 against 1: 20% of picks.
	if n := float64(got["new:80"]) / 50; math.Abs(n-20) > 3 {
		t.Fatalf("new endpoint got %.1f%% 25%% into its warmup, want 20%%", n)
	}
	clk.Advance(100 * time.Second)
	got = countPicks(c, 5000, Request{})
	if n := float64(got["new:80"]) / 50; math.Abs(n-50) > 3 {
		t.Fatalf("new endpoint got %.1f%% after warmup, want 50%%", n)
	}
}

func TestAdmitRequest(t *testing.T) {
	c := policyCluster(newClock(), resource.LBRoundRobin, resource.ClusterPolicy{Thresholds: &resource.Thresholds{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 10, MaxRetries: 1}}, addrs(1)...)
	ctx := context.Background()
	r1, err := c.AdmitRequest(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	// The second waits as pending; the third overflows.
	got := make(chan error, 1)
	go func() {
		r2, err := c.AdmitRequest(ctx, false)
		if err == nil {
			r2()
		}
		got <- err
	}()
	waitPending(t, c, 1)
	if _, err := c.AdmitRequest(ctx, false); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third request: %v, want overflow", err)
	}
	r1()
	if err := <-got; err != nil {
		t.Fatalf("pending request: %v", err)
	}
	// HTTP/2 requests are bounded by max_requests only.
	c2 := policyCluster(newClock(), resource.LBRoundRobin, resource.ClusterPolicy{Thresholds: &resource.Thresholds{MaxConnections: 1, MaxPendingRequests: 0, MaxRequests: 2, MaxRetries: 1}}, addrs(1)...)
	a, _ := c2.AdmitRequest(ctx, true)
	b, _ := c2.AdmitRequest(ctx, true)
	if _, err := c2.AdmitRequest(ctx, true); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third h2 request: %v, want overflow", err)
	}
	a()
	b()
	// A pending request whose caller gives up leaves no slot behind.
	r1, _ = c.AdmitRequest(ctx, false)
	cctx, cancel := context.WithCancel(ctx)
	go func() { waitPending(t, c, 1); cancel() }()
	if _, err := c.AdmitRequest(cctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pending: %v", err)
	}
	r1()
	r3, err := c.AdmitRequest(ctx, false)
	if err != nil {
		t.Fatalf("slot leaked: %v", err)
	}
	r3()
	// Retries.
	rel, ok := c.AdmitRetry()
	if !ok {
		t.Fatal("first retry refused")
	}
	if _, ok := c.AdmitRetry(); ok {
		t.Fatal("second concurrent retry allowed with max_retries 1")
	}
	rel()
}

func waitPending(t *testing.T, c *Cluster, n int64) {
	t.Helper()
	for range 1000 {
		c.state.limits.mu.Lock()
		p := c.state.limits.pending
		c.state.limits.mu.Unlock()
		if p == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pending never reached %d", n)
}

func TestRequestHash(t *testing.T) {
	now := time.Unix(100, 0)
	req := func(target string, header ...string) *http.Request {
		r := httptest.NewRequest("GET", target, nil)
		r.RemoteAddr = "10.1.2.3:5555"
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		return r
	}
	hdr := []resource.HashPolicy{{Header: "X-User"}}
	a, okA, _ := RequestHash(hdr, req("/", "X-User", "alice"), now)
	b, _, _ := RequestHash(hdr, req("/other", "X-User", "alice"), now)
	c, _, _ := RequestHash(hdr, req("/", "X-User", "bob"), now)
	if !okA || a != b || a == c {
		t.Fatalf("header hash: alice %x/%x bob %x ok %v", a, b, c, okA)
	}
	if _, ok, _ := RequestHash(hdr, req("/"), now); ok {
		t.Fatal("hash without the header")
	}
	q := []resource.HashPolicy{{QueryParameter: "user"}}
	x, _, _ := RequestHash(q, req("/?user=alice"), now)
	y, _, _ := RequestHash(q, req("/p?x=1&user=alice"), now)
	if x != y {
		t.Fatal("query hash differs for the same value")
	}
	src := []resource.HashPolicy{{SourceIP: true}}
	s1, _, _ := RequestHash(src, req("/"), now)
	r2 := req("/")
	r2.RemoteAddr = "10.1.2.3:6666"
	s2, _, _ := RequestHash(src, r2, now)
	if s1 != s2 {
		t.Fatal("source IP hash depends on the port")
	}
	cookie := []resource.HashPolicy{{Cookie: &resource.HashCookie{Name: "sticky", Path: "/", TTL: time.Hour, HasTTL: true}}}
	h1, ok, set := RequestHash(cookie, req("/"), now)
	if !ok || !strings.HasPrefix(set, `sticky="`) || !strings.Contains(set, "Max-Age=3600; Path=/; HttpOnly") {
		t.Fatalf("generated cookie: ok %v set %q", ok, set)
	}
	value := strings.TrimSuffix(strings.TrimPrefix(strings.Split(set, ";")[0], `sticky="`), `"`)
	h2, _, set2 := RequestHash(cookie, req("/", "Cookie", `sticky="`+value+`"`), now)
	if h1 != h2 || set2 != "" {
		t.Fatalf("cookie sent back: hash %x want %x, set %q", h2, h1, set2)
	}
	noTTL := []resource.HashPolicy{{Cookie: &resource.HashCookie{Name: "sticky"}}}
	if _, ok, set := RequestHash(noTTL, req("/"), now); ok || set != "" {
		t.Fatal("cookie generated without a TTL")
	}
}
