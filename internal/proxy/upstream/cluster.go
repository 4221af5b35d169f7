// Package upstream holds compiled clusters: their healthy endpoints and the load
// balancer that picks one per request or connection. Per-endpoint counters (active
// requests) and the round-robin cursor are carried over from the previous config's
// cluster of the same name, so a config swap does not reset load-balancing state.
package upstream

import (
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/tlsconf"
)

// Endpoint is one healthy upstream host.
type Endpoint struct {
	Address string
	Weight  uint32
	// TLS originates TLS to the endpoint (its cluster's transport socket for it); nil
	// means plaintext.
	TLS    *tlsconf.Client
	active *atomic.Int64
}

// Active returns the number of requests or connections in flight to the endpoint.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Begin counts a request as in flight; call the returned func when it ends.
func (e *Endpoint) Begin() (done func()) {
	e.active.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			e.active.Add(-1)
		}
	}
}

// Cluster is a compiled cluster. It is immutable except for its atomic counters.
type Cluster struct {
	Name  string
	HTTP2 bool
	// UseDownstreamProtocol: h2c when the request arrived over HTTP/2.
	UseDownstreamProtocol bool
	ConnectTimeout        time.Duration
	LB                    resource.LBPolicy

	endpoints []*Endpoint
	// all lists every endpoint the control plane sent, healthy or not, for explain.
	all     []EndpointStatus
	uniform bool // all weights equal: plain modulo round robin
	cumul   []uint64
	total   uint64
	cursor  *atomic.Uint64
}

// NewCluster compiles a cluster from its definition and endpoints (nil when it has
// none yet). prev, when not nil, is the same cluster in the previous config.
func NewCluster(def *resource.Cluster, eps *resource.Endpoints, prev *Cluster) *Cluster {
	return NewClusterTLS(def, eps, prev, nil)
}

// NewClusterTLS is NewCluster with a function giving each endpoint's TLS client (nil:
// plaintext); tlsFor may be nil.
func NewClusterTLS(def *resource.Cluster, eps *resource.Endpoints, prev *Cluster, tlsFor func(resource.Endpoint) *tlsconf.Client) *Cluster {
	c := &Cluster{
		Name:                  def.Name,
		HTTP2:                 def.HTTP2,
		UseDownstreamProtocol: def.UseDownstreamProtocol,
		ConnectTimeout:        def.ConnectTimeout,
		LB:                    def.LB,
		cursor:                new(atomic.Uint64),
		uniform:               true,
	}
	if def.Kind == resource.ClusterStatic {
		eps = def.Static
	}
	old := map[string]*atomic.Int64{}
	if prev != nil {
		c.cursor = prev.cursor
		for _, e := range prev.endpoints {
			old[e.Address] = e.active
		}
	}
	if eps != nil {
		for _, e := range eps.Endpoints {
			st := EndpointStatus{Address: e.Address, Healthy: e.Healthy, Weight: e.Weight}
			if tlsFor != nil {
				st.TLS = tlsFor(e) != nil
			}
			c.all = append(c.all, st)
			if !e.Healthy {
				continue
			}
			active := old[e.Address]
			if active == nil {
				active = new(atomic.Int64)
				old[e.Address] = active // duplicates share one counter
			}
			ep := &Endpoint{Address: e.Address, Weight: e.Weight, active: active}
			if tlsFor != nil {
				ep.TLS = tlsFor(e)
			}
			c.endpoints = append(c.endpoints, ep)
		}
	}
	// A stable order keeps round robin fair across swaps that reorder endpoints.
	sort.SliceStable(c.endpoints, func(i, j int) bool { return c.endpoints[i].Address < c.endpoints[j].Address })
	for i, e := range c.endpoints {
		c.total += uint64(e.Weight)
		c.cumul = append(c.cumul, c.total)
		if i > 0 && e.Weight != c.endpoints[0].Weight {
			c.uniform = false
		}
	}
	return c
}

// EndpointStatus is an endpoint as the control plane sent it.
type EndpointStatus struct {
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
	Weight  uint32 `json:"weight"`
	// TLS: the proxy originates (mutual) TLS to this endpoint.
	TLS bool `json:"tls,omitempty"`
}

// AllEndpoints returns every endpoint, healthy or not; callers must not modify it.
func (c *Cluster) AllEndpoints() []EndpointStatus { return c.all }

// Endpoints returns the healthy endpoints; callers must not modify the slice.
func (c *Cluster) Endpoints() []*Endpoint { return c.endpoints }

// Pick chooses an endpoint, avoiding exclude when another one exists (used to retry a
// failed connect elsewhere). It returns nil when the cluster has no healthy endpoint.
func (c *Cluster) Pick(exclude *Endpoint) *Endpoint {
	n := len(c.endpoints)
	switch n {
	case 0:
		return nil
	case 1:
		return c.endpoints[0]
	}
	var e *Endpoint
	if c.LB == resource.LBLeastRequest {
		e = c.pickLeastRequest(exclude)
	} else {
		e = c.pickRoundRobin()
		if e == exclude {
			e = c.pickRoundRobin()
			if e == exclude {
				e = c.endpoints[(indexOf(c.endpoints, e)+1)%n]
			}
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
	k := c.cursor.Add(1) - 1
	if c.uniform {
		return c.endpoints[k%uint64(len(c.endpoints))]
	}
	// Weighted round robin: walk the cumulative weights as one long cycle.
	pos := k % c.total
	i := sort.Search(len(c.cumul), func(i int) bool { return c.cumul[i] > pos })
	return c.endpoints[i]
}

// pickLeastRequest is Envoy's default: two random choices, the one with fewer active
// requests per unit of weight wins.
func (c *Cluster) pickLeastRequest(exclude *Endpoint) *Endpoint {
	n := len(c.endpoints)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := c.endpoints[i], c.endpoints[j]
	if a == exclude {
		return b
	}
	if b == exclude {
		return a
	}
	// a.active/a.weight <= b.active/b.weight, without division.
	if a.Active()*int64(b.Weight) <= b.Active()*int64(a.Weight) {
		return a
	}
	return b
}
