package upstream

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/proxy/resource"
)

func cluster(lb resource.LBPolicy, weights ...uint32) *Cluster {
	eps := &resource.Endpoints{ClusterName: "c"}
	for i, w := range weights {
		eps.Endpoints = append(eps.Endpoints, resource.Endpoint{Address: string(rune('a'+i)) + ":1", Healthy: true, Weight: w})
	}
	eps.Endpoints = append(eps.Endpoints, resource.Endpoint{Address: "unhealthy:1", Healthy: false, Weight: 1})
	return NewCluster(&resource.Cluster{Name: "c", LB: lb}, eps, nil)
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		want    map[string]int
	}{
		{"uniform", []uint32{1, 1, 1}, map[string]int{"a:1": 4, "b:1": 4, "c:1": 4}},
		{"weighted", []uint32{1, 2, 3}, map[string]int{"a:1": 2, "b:1": 4, "c:1": 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(resource.LBRoundRobin, tc.weights...)
			got := map[string]int{}
			for range 12 {
				got[c.Pick(nil).Address]++
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("picks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	c := cluster(resource.LBLeastRequest, 1, 1)
	busy := c.Endpoints()[0]
	for range 5 {
		busy.Begin()
	}
	for range 100 {
		if got := c.Pick(nil); got == busy {
			t.Fatalf("picked the busy endpoint %s (active %d)", got.Address, got.Active())
		}
	}
}

func TestPickExcludesFailed(t *testing.T) {
	for _, lb := range []resource.LBPolicy{resource.LBRoundRobin, resource.LBLeastRequest} {
		c := cluster(lb, 1, 1)
		failed := c.Endpoints()[1]
		for range 50 {
			if c.Pick(failed) == failed {
				t.Fatalf("lb %v picked the excluded endpoint", lb)
			}
		}
	}
}

func TestStateCarriedAcrossSwap(t *testing.T) {
	old := cluster(resource.LBLeastRequest, 1, 1)
	done := old.Endpoints()[0].Begin()
	next := NewCluster(&resource.Cluster{Name: "c", LB: resource.LBLeastRequest}, &resource.Endpoints{Endpoints: []resource.Endpoint{{Address: "a:1", Healthy: true, Weight: 1}}}, old)
	if got := next.Endpoints()[0].Active(); got != 1 {
		t.Fatalf("active after swap = %d, want 1", got)
	}
	done()
	done() // idempotent
	if got := next.Endpoints()[0].Active(); got != 0 {
		t.Fatalf("active after done = %d, want 0", got)
	}
	if NewCluster(&resource.Cluster{Name: "c"}, nil, nil).Pick(nil) != nil {
		t.Fatal("empty cluster picked an endpoint")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name string
		lb   resource.LBPolicy
		w    []uint32
	}{
		{"round_robin", resource.LBRoundRobin, []uint32{1, 1, 1, 1, 1, 1, 1, 1}},
		{"weighted_round_robin", resource.LBRoundRobin, []uint32{1, 2, 3, 4, 5, 6, 7, 8}},
		{"least_request", resource.LBLeastRequest, []uint32{1, 1, 1, 1, 1, 1, 1, 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := cluster(bc.lb, bc.w...)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					done := c.Pick(nil).Begin()
					done()
				}
			})
		})
	}
}
