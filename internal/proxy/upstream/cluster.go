// Package upstream holds compiled clusters: their endpoints grouped by priority and
// locality, the load balancer that picks one per request or connection, circuit
// breakers, and outlier detection. What must survive a config swap (requests in
// flight per endpoint, the round-robin cursor, ejections, latency averages, limits in
// use) lives in a state carried over from the previous config's cluster of the same
// name; everything else in a Cluster is immutable once compiled.
package upstream

import (
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/tlsconf"
)

// Endpoint is one upstream host the control plane marked healthy (or unknown).
type Endpoint struct {
	Address string
	Weight  uint32
	// TLS originates TLS to the endpoint (its cluster's transport socket for it); nil
	// means plaintext.
	TLS *tlsconf.Client
	// Priority and Locality come from EDS; LocalityWeight is the locality's weight.
	Priority       uint32
	Locality       string
	LocalityWeight uint32
	host           *hostState
}

// Active returns the number of requests or connections in flight to the endpoint.
func (e *Endpoint) Active() int64 { return e.host.active.Load() }

// Begin counts a request as in flight; call the returned func when it ends.
func (e *Endpoint) Begin() (done func()) {
	e.host.active.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			e.host.active.Add(-1)
		}
	}
}

// Cluster is a compiled cluster. It is immutable except for its shared state.
type Cluster struct {
	Name  string
	HTTP2 bool
	// UseDownstreamProtocol: h2c when the request arrived over HTTP/2.
	UseDownstreamProtocol bool
	ConnectTimeout        time.Duration
	LB                    resource.LBPolicy
	// OriginalDst: connections go to the downstream connection's original destination
	// (ORIGINAL_DST cluster); Pick returns nil.
	OriginalDst bool
	// BindAddress is the source address of upstream connections ("" = any).
	BindAddress string
	// Policy is the cluster's balancing, limits and health settings as decoded.
	Policy resource.ClusterPolicy

	endpoints []*Endpoint
	// all lists every endpoint the control plane sent, healthy or not, for explain.
	all []EndpointStatus
	// levels are the endpoints by priority, lowest number first.
	levels []*level
	// simple: one priority, no locality weights, no outlier detection, no slow start:
	// the balancer works on endpoints directly, without filtering.
	simple  bool
	uniform bool // all weights equal: plain modulo round robin
	cumul   []uint64
	total   uint64
	state   *clusterState
	now     func() time.Time
}

// Options are the optional inputs of NewClusterWith.
type Options struct {
	// TLSFor gives each endpoint's TLS client (nil: plaintext).
	TLSFor func(resource.Endpoint) *tlsconf.Client
	// Now is the clock (time.Now when nil); tests inject one.
	Now func() time.Time
}

// NewCluster compiles a cluster from its definition and endpoints (nil when it has
// none yet). prev, when not nil, is the same cluster in the previous config.
func NewCluster(def *resource.Cluster, eps *resource.Endpoints, prev *Cluster) *Cluster {
	return NewClusterWith(def, eps, prev, Options{})
}

// NewClusterTLS is NewCluster with a function giving each endpoint's TLS client (nil:
// plaintext); tlsFor may be nil.
func NewClusterTLS(def *resource.Cluster, eps *resource.Endpoints, prev *Cluster, tlsFor func(resource.Endpoint) *tlsconf.Client) *Cluster {
	return NewClusterWith(def, eps, prev, Options{TLSFor: tlsFor})
}

// NewClusterWith compiles a cluster with options.
func NewClusterWith(def *resource.Cluster, eps *resource.Endpoints, prev *Cluster, opts Options) *Cluster {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c := &Cluster{
		Name:                  def.Name,
		HTTP2:                 def.HTTP2,
		UseDownstreamProtocol: def.UseDownstreamProtocol,
		ConnectTimeout:        def.ConnectTimeout,
		LB:                    def.LB,
		OriginalDst:           def.Kind == resource.ClusterOriginalDst,
		BindAddress:           def.BindAddress,
		Policy:                def.Policy,
		uniform:               true,
		now:                   now,
	}
	if prev != nil && prev.state != nil {
		c.state = prev.state
	} else {
		c.state = newClusterState(now())
	}
	if def.Kind == resource.ClusterStatic {
		eps = def.Static
	}
	t := now()
	initial := prev == nil
	hosts := c.state.hostsFor(t)
	if eps != nil {
		for _, e := range eps.Endpoints {
			st := EndpointStatus{Address: e.Address, Healthy: e.Healthy, Weight: e.Weight, Priority: e.Priority, Locality: e.Locality}
			if opts.TLSFor != nil {
				st.TLS = opts.TLSFor(e) != nil
			}
			c.all = append(c.all, st)
			if !e.Healthy {
				continue
			}
			ep := &Endpoint{Address: e.Address, Weight: e.Weight, Priority: e.Priority, Locality: e.Locality, LocalityWeight: e.LocalityWeight,
				host: hosts.get(e.Address, t, initial)}
			if opts.TLSFor != nil {
				ep.TLS = opts.TLSFor(e)
			}
			c.endpoints = append(c.endpoints, ep)
		}
	}
	hosts.commit()
	// A stable order keeps round robin fair across swaps that reorder endpoints.
	sort.SliceStable(c.endpoints, func(i, j int) bool {
		a, b := c.endpoints[i], c.endpoints[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Address < b.Address
	})
	for i, e := range c.endpoints {
		c.total += uint64(e.Weight)
		c.cumul = append(c.cumul, c.total)
		if i > 0 && e.Weight != c.endpoints[0].Weight {
			c.uniform = false
		}
	}
	c.levels = buildLevels(c)
	c.simple = len(c.levels) <= 1 && !c.Policy.LocalityWeighted && c.Policy.Outlier == nil && c.Policy.SlowStart == nil
	return c
}

// EndpointStatus is an endpoint as the control plane sent it.
type EndpointStatus struct {
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
	Weight  uint32 `json:"weight"`
	// TLS: the proxy originates (mutual) TLS to this endpoint.
	TLS      bool   `json:"tls,omitempty"`
	Priority uint32 `json:"priority,omitempty"`
	Locality string `json:"locality,omitempty"`
	// Ejected: outlier detection keeps the endpoint out of balancing for now.
	Ejected bool `json:"ejected,omitempty"`
}

// AllEndpoints returns every endpoint, healthy or not, with its ejection state now.
func (c *Cluster) AllEndpoints() []EndpointStatus {
	out := append([]EndpointStatus(nil), c.all...)
	now := c.now()
	for i := range out {
		for _, e := range c.endpoints {
			if e.Address == out[i].Address && e.host.ejectedAt(now) {
				out[i].Ejected = true
			}
		}
	}
	return out
}

// Endpoints returns the healthy endpoints; callers must not modify the slice.
func (c *Cluster) Endpoints() []*Endpoint { return c.endpoints }

// Pick chooses an endpoint, avoiding exclude when another one exists (used to retry a
// failed connect elsewhere). It returns nil when the cluster has no healthy endpoint.
func (c *Cluster) Pick(exclude *Endpoint) *Endpoint {
	return c.Choose(Request{Exclude: exclude})
}

// Request is what a balancer may use to pick: the request's hash (hash policies) and
// an endpoint to avoid.
type Request struct {
	Hash    uint64
	HasHash bool
	Exclude *Endpoint
}

// Choose picks an endpoint for a request: a priority level by Envoy's priority load
// (health with the 1.4 overprovisioning factor), a locality by weight when the cluster
// is locality weighted, then a host by the cluster's algorithm among those outlier
// detection has not ejected — or among all of the level when it is in panic (healthy
// share under the panic threshold). nil when there is no endpoint.
func (c *Cluster) Choose(r Request) *Endpoint {
	if len(c.endpoints) == 0 {
		return nil
	}
	if c.simple {
		return c.pickAmong(c.endpoints, c.levels[0], r, true)
	}
	return c.chooseLevel(r)
}

func (c *Cluster) pickAmong(eps []*Endpoint, lv *level, r Request, all bool) *Endpoint {
	n := len(eps)
	switch n {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	switch c.LB {
	case resource.LBLeastRequest:
		if c.Policy.PeakEWMA != nil {
			return c.pickPeakEWMA(eps, r.Exclude)
		}
		return c.pickLeastRequest(eps, r.Exclude)
	case resource.LBRandom:
		e := eps[rand.IntN(n)]
		if e == r.Exclude {
			e = eps[(indexOf(eps, e)+1)%n]
		}
		return e
	case resource.LBRingHash, resource.LBMaglev:
		return c.pickHash(eps, lv, r)
	}
	if c.Policy.SlowStart != nil {
		return pickWeightedRandom(eps, c.effectiveWeights(eps), r.Exclude)
	}
	if !all {
		return c.pickRRAmong(eps, r.Exclude)
	}
	e := c.pickRoundRobin()
	if e == r.Exclude {
		e = c.pickRoundRobin()
		if e == r.Exclude {
			e = eps[(indexOf(eps, e)+1)%n]
		}
	}
	return e
}

func indexOf(eps []*Endpoint, e *Endpoint) int {
	for i, x := range eps {
		if x == e {
			return i
		}
	}
	return 0
}

func (c *Cluster) pickRoundRobin() *Endpoint {
	k := c.state.cursor.Add(1) - 1
	if c.uniform {
		return c.endpoints[k%uint64(len(c.endpoints))]
	}
	// Weighted round robin: walk the cumulative weights as one long cycle.
	pos := k % c.total
	i := sort.Search(len(c.cumul), func(i int) bool { return c.cumul[i] > pos })
	return c.endpoints[i]
}

// pickLeastRequest is Envoy's default: two random choices, the one with fewer active
// requests per unit of (slow-start adjusted) weight wins.
func (c *Cluster) pickLeastRequest(eps []*Endpoint, exclude *Endpoint) *Endpoint {
	a, b := twoChoices(eps)
	if a == exclude {
		return b
	}
	if b == exclude {
		return a
	}
	wa, wb := float64(a.Weight), float64(b.Weight)
	if c.Policy.SlowStart != nil {
		now := c.now()
		wa *= c.slowStartFactor(a, now)
		wb *= c.slowStartFactor(b, now)
	}
	// a.active/wa <= b.active/wb, without division.
	if float64(a.Active())*wb <= float64(b.Active())*wa {
		return a
	}
	return b
}

func twoChoices(eps []*Endpoint) (*Endpoint, *Endpoint) {
	n := len(eps)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	return eps[i], eps[j]
}

// pickWeightedRandom picks by weight; used where round robin's shared cursor cannot
// apply (a filtered host list, or weights that change with slow start).
func pickWeightedRandom(eps []*Endpoint, weights []float64, exclude *Endpoint) *Endpoint {
	var total float64
	for i, e := range eps {
		if e != exclude {
			total += weights[i]
		}
	}
	if total <= 0 {
		return eps[rand.IntN(len(eps))]
	}
	x := rand.Float64() * total
	for i, e := range eps {
		if e == exclude {
			continue
		}
		if x < weights[i] {
			return e
		}
		x -= weights[i]
	}
	return eps[len(eps)-1]
}

func (c *Cluster) effectiveWeights(eps []*Endpoint) []float64 {
	w := make([]float64, len(eps))
	now := c.now()
	for i, e := range eps {
		w[i] = float64(e.Weight)
		if c.Policy.SlowStart != nil {
			w[i] *= c.slowStartFactor(e, now)
		}
	}
	return w
}
