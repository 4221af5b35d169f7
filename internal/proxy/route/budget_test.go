package route

import (
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	b := NewBudget(resource.RetryBudget{Ratio: 0.5, MinPerSecond: 0, TTL: 10 * time.Second}, clock)
	b.Request()
	if b.TryRetry() {
		t.Fatal("1 request, ratio 0.5: no retry allowed")
	}
	b.Request()
	if !b.TryRetry() {
		t.Fatal("2 requests, ratio 0.5: one retry allowed")
	}
	if b.TryRetry() {
		t.Fatal("the one retry is used")
	}
	// After the TTL the window is empty again.
	now = now.Add(11 * time.Second)
	b.Request()
	if b.TryRetry() {
		t.Fatal("old requests must not count after the TTL")
	}

	floor := NewBudget(resource.RetryBudget{Ratio: 0, MinPerSecond: 1, TTL: 2 * time.Second}, clock)
	if !floor.TryRetry() || !floor.TryRetry() || floor.TryRetry() {
		t.Fatal("floor of 1/s over 2 s: exactly 2 retries")
	}
	now = now.Add(1 * time.Second)
	if floor.TryRetry() {
		t.Fatal("half the window later both retries still count")
	}
	now = now.Add(1500 * time.Millisecond)
	if !floor.TryRetry() {
		t.Fatal("the window moved on: a retry is allowed")
	}
}

func TestBudgetCarriedOver(t *testing.T) {
	rc := func(ratio float64) *resource.RouteConfig {
		return &resource.RouteConfig{Name: "r", VirtualHosts: []resource.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []resource.Route{{
			Name: "x", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/"}, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}},
			Retry: &resource.RetryPolicy{NumRetries: 1, Budget: &resource.RetryBudget{Ratio: ratio, TTL: 10 * time.Second}},
		}}}}}
	}
	first := Compile(rc(0.5), nil)
	same := Compile(rc(0.5), first)
	if same.VirtualHost("h").Routes[0].Budget != first.VirtualHost("h").Routes[0].Budget {
		t.Error("same budget settings: state must carry over")
	}
	changed := Compile(rc(0.7), same)
	if changed.VirtualHost("h").Routes[0].Budget == first.VirtualHost("h").Routes[0].Budget {
		t.Error("changed settings: a new budget")
	}
}

func TestQueryParameterMatch(t *testing.T) {
	tbl := New(&resource.RouteConfig{Name: "r", VirtualHosts: []resource.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []resource.Route{{
		Name: "q", Match: resource.RouteMatch{Kind: resource.PathPrefix, Path: "/", CaseSensitive: true, Query: []resource.QueryMatcher{
			{Name: "debug", Present: true},
			{Name: "id", Match: resource.StringMatcher{Kind: resource.StringRegex, Regex: regexp.MustCompile("^(?:[0-9]+)$")}},
		}}, Clusters: []resource.WeightedCluster{{Name: "c", Weight: 1}},
	}}}}})
	for target, want := range map[string]bool{
		"/?debug&id=42":     true,
		"/?debug=1&id=7":    true,
		"/?id=42":           false,
		"/?debug&id=4x":     false,
		"/?debug&id=1&id=x": true, // the first value counts
		"/?debug&id=%34%32": true, // values are decoded
	} {
		if got := tbl.Match(httptest.NewRequest("GET", "http://h"+target, nil)) != nil; got != want {
			t.Errorf("%s: matched %v, want %v", target, got, want)
		}
	}
}
