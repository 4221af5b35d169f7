package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEffectiveTrafficPolicy checks Istio's merge: a port entry replaces all four
// components of its level (omitted ones go to defaults), a subset's components replace
// the top level's whole (not field by field inside a component), then the subset's own
// port entry replaces all four again.
func TestEffectiveTrafficPolicy(t *testing.T) {
	rr := &LoadBalancerSettings{Simple: LBRoundRobin}
	lr := &LoadBalancerSettings{Simple: LBLeastRequest}
	random := &LoadBalancerSettings{Simple: LBRandom}
	hash := &LoadBalancerSettings{ConsistentHash: &ConsistentHash{HTTPHeaderName: "x-user"}}
	pool := &ConnectionPool{TCP: &TCPPool{MaxConnections: 10}, HTTP: &HTTPPool{HTTP1MaxPendingRequests: 5}}
	subPool := &ConnectionPool{HTTP: &HTTPPool{HTTP2MaxRequests: 1}}
	od := &OutlierDetection{BaseEjectionTime: 30}
	dr := &DestinationRule{
		TrafficPolicy: &TrafficPolicy{
			LoadBalancer: lr, ConnectionPool: pool, OutlierDetection: od,
			PortLevel: []PortTrafficPolicy{{Port: 9090, LoadBalancer: random}},
		},
		Subsets: []Subset{
			{Name: "plain"},
			{Name: "hash", TrafficPolicy: &TrafficPolicy{LoadBalancer: hash, ConnectionPool: subPool}},
			{Name: "ports", TrafficPolicy: &TrafficPolicy{PortLevel: []PortTrafficPolicy{{Port: 8080, LoadBalancer: rr}}}},
		},
	}
	tests := []struct {
		subset string
		port   int
		want   *TrafficPolicy
	}{
		{"", 8080, &TrafficPolicy{LoadBalancer: lr, ConnectionPool: pool, OutlierDetection: od}},
		// The port entry sets only the load balancer: pool and outlier detection are not
		// inherited (Istio's documented rule).
		{"", 9090, &TrafficPolicy{LoadBalancer: random}},
		{"plain", 8080, &TrafficPolicy{LoadBalancer: lr, ConnectionPool: pool, OutlierDetection: od}},
		// The subset's pool replaces the top-level pool whole: no TCP limit remains.
		{"hash", 8080, &TrafficPolicy{LoadBalancer: hash, ConnectionPool: subPool, OutlierDetection: od}},
		// The top-level port entry applies first; the subset's components then win.
		{"hash", 9090, &TrafficPolicy{LoadBalancer: hash, ConnectionPool: subPool}},
		// The subset's own port entry replaces everything for its port...
		{"ports", 8080, &TrafficPolicy{LoadBalancer: rr}},
		// ...and the top level's entry still applies to the other port.
		{"ports", 9090, &TrafficPolicy{LoadBalancer: random}},
		{"missing", 8080, &TrafficPolicy{LoadBalancer: lr, ConnectionPool: pool, OutlierDetection: od}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, dr.EffectiveTrafficPolicy(tt.subset, tt.port)); diff != "" {
			t.Errorf("subset %q port %d (-want +got):\n%s", tt.subset, tt.port, diff)
		}
	}
	var none *DestinationRule
	if none.EffectiveTrafficPolicy("", 80) != nil {
		t.Error("nil rule has a policy")
	}
	only := &DestinationRule{Subsets: []Subset{{Name: "s", TrafficPolicy: &TrafficPolicy{LoadBalancer: rr}}}}
	if diff := cmp.Diff(&TrafficPolicy{LoadBalancer: rr}, only.EffectiveTrafficPolicy("s", 80)); diff != "" {
		t.Errorf("subset-only policy (-want +got):\n%s", diff)
	}
}

func TestLocalityPattern(t *testing.T) {
	l := Locality{Region: "us-east", Zone: "z1", Subzone: "s1"}
	for p, want := range map[string]bool{
		"us-east": true, "us-east/*": true, "us-east/z1": true, "us-east/z1/*": true, "us-east/z1/s1": true,
		"*": true, "us-west": false, "us-east/z2": false, "us-east/z1/s2": false,
	} {
		if got := l.MatchesPattern(p); got != want {
			t.Errorf("%q: %v, want %v", p, got, want)
		}
	}
}
