package upstream

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// clusterState is what a cluster keeps across config swaps: one per cluster name,
// handed from each compiled Cluster to the next.
type clusterState struct {
	cursor atomic.Uint64
	// created anchors outlier detection's interval ticks.
	created time.Time
	mu      sync.Mutex // guards hosts (compile) and ejection decisions
	hosts   map[string]*hostState
	limits  limits
}

func newClusterState(now time.Time) *clusterState {
	return &clusterState{created: now, hosts: map[string]*hostState{}}
}

// hostState is one endpoint's counters, shared by every compiled Cluster that lists it.
type hostState struct {
	active atomic.Int64
	// added is when the endpoint joined; warm endpoints (in the cluster's first host
	// set) never slow-start.
	added time.Time
	warm  bool
	// ejectedUntil is the UnixNano at which an ejection ends (0: never ejected).
	ejectedUntil atomic.Int64

	mu                 sync.Mutex // guards the fields below
	consecutive5xx     uint32
	consecutiveGateway uint32
	multiplier         uint32 // Envoy's ejection time multiplier
	rtt                float64
	rttStamp           time.Time
	hasRTT             bool
}

func (h *hostState) ejectedAt(now time.Time) bool {
	u := h.ejectedUntil.Load()
	return u != 0 && now.UnixNano() < u
}

// hostSet collects the hosts of a cluster being compiled.
type hostSet struct {
	st   *clusterState
	next map[string]*hostState
}

func (s *clusterState) hostsFor(time.Time) *hostSet {
	s.mu.Lock()
	return &hostSet{st: s, next: map[string]*hostState{}}
}

// get returns the state of an address: the previous one, or a new one added now.
func (hs *hostSet) get(addr string, now time.Time, initial bool) *hostState {
	if h := hs.next[addr]; h != nil {
		return h // duplicates share one state
	}
	h := hs.st.hosts[addr]
	if h == nil {
		h = &hostState{added: now, warm: initial}
	}
	hs.next[addr] = h
	return h
}

// commit keeps only the hosts of the new set: a removed host's state is forgotten.
func (hs *hostSet) commit() {
	hs.st.hosts = hs.next
	hs.st.mu.Unlock()
}

// slowStartFactor is Envoy's slow start: the weight of an endpoint younger than the
// window is scaled by max(min weight, (age/window)^(1/aggression)).
func (c *Cluster) slowStartFactor(e *Endpoint, now time.Time) float64 {
	s := c.Policy.SlowStart
	if s == nil || e.host.warm {
		return 1
	}
	age := now.Sub(e.host.added)
	if age >= s.Window {
		return 1
	}
	f := math.Pow(max(age.Seconds(), 1)/s.Window.Seconds(), 1/s.Aggression)
	return min(1, max(f, s.MinWeightPercent/100))
}
