package upstream

import (
	"math/rand/v2"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// overprovisioning is Envoy's default overprovisioning factor (140%): a level keeps all
// its load until fewer than 1/1.4 (~71%) of its hosts are healthy.
const overprovisioning = 140

// level is the endpoints of one priority.
type level struct {
	priority   uint32
	hosts      []*Endpoint
	localities []*localityGroup // when the cluster is locality weighted
	ring       *hashRing
	maglev     *maglevTable
}

type localityGroup struct {
	name   string
	weight uint32
	hosts  []*Endpoint
}

// buildLevels groups the (priority-sorted) endpoints and builds each level's hash
// table when the cluster balances by hash.
func buildLevels(c *Cluster) []*level {
	var out []*level
	for _, e := range c.endpoints {
		if len(out) == 0 || out[len(out)-1].priority != e.Priority {
			out = append(out, &level{priority: e.Priority})
		}
		lv := out[len(out)-1]
		lv.hosts = append(lv.hosts, e)
	}
	if len(out) == 0 {
		out = append(out, &level{})
	}
	for _, lv := range out {
		if c.Policy.LocalityWeighted {
			byName := map[string]*localityGroup{}
			for _, e := range lv.hosts {
				g := byName[e.Locality]
				if g == nil {
					g = &localityGroup{name: e.Locality, weight: e.LocalityWeight}
					byName[e.Locality] = g
					lv.localities = append(lv.localities, g)
				}
				g.hosts = append(g.hosts, e)
			}
		}
		switch c.LB {
		case resource.LBRingHash:
			minSize, maxSize := c.Policy.RingSize, c.Policy.MaxRingSize
			if minSize == 0 {
				minSize = 1024
			}
			if maxSize == 0 {
				maxSize = 8 << 20
			}
			lv.ring = newHashRing(lv.hosts, minSize, max(minSize, maxSize))
		case resource.LBMaglev:
			size := c.Policy.MaglevTableSize
			if size == 0 {
				size = 65537
			}
			lv.maglev = newMaglevTable(lv.hosts, size)
		}
	}
	return out
}

// chooseLevel is Choose for clusters with priorities, locality weights, outlier
// detection or slow start.
func (c *Cluster) chooseLevel(r Request) *Endpoint {
	now := c.now()
	healthy := make([][]*Endpoint, len(c.levels))
	health := make([]int, len(c.levels))
	sum := 0
	for i, lv := range c.levels {
		for _, e := range lv.hosts {
			if !e.host.ejectedAt(now) {
				healthy[i] = append(healthy[i], e)
			}
		}
		if n := len(lv.hosts); n > 0 {
			health[i] = min(100, overprovisioning*len(healthy[i])/n)
		}
		sum += health[i]
	}
	normTotal := min(100, sum)
	idx := 0
	if sum > 0 {
		var x int
		if r.HasHash {
			x = int(r.Hash % 100)
		} else {
			x = rand.IntN(100)
		}
		idx = pickLevel(health, normTotal, x)
	}
	lv := c.levels[idx]
	cands := healthy[idx]
	// Envoy's per-priority panic: the level's plain healthy share (no
	// overprovisioning) under the threshold, or nothing healthy anywhere.
	panicMode := sum == 0 || float64(100*len(cands)) < c.Policy.PanicThreshold*float64(len(lv.hosts))
	if panicMode || len(cands) == 0 {
		cands = lv.hosts
	}
	if lv.ring != nil || lv.maglev != nil {
		return c.pickHash(cands, lv, r)
	}
	if len(lv.localities) > 0 {
		if g := c.pickLocality(lv, now, panicMode); g != nil {
			cands = g
		}
	}
	return c.pickAmong(cands, lv, r, false)
}

// pickLevel applies Envoy's priority load: each level takes its health (capped by
// what is left), and when the total is under 100 the loads are scaled up to 100.
func pickLevel(health []int, normTotal, x int) int {
	remaining := 100
	acc := 0
	for i, h := range health {
		load := min(h, remaining)
		remaining -= load
		scaled := load * 100 / normTotal
		acc += scaled
		if x < acc {
			return i
		}
	}
	// Rounding leftovers go to the last level with health.
	for i := len(health) - 1; i >= 0; i-- {
		if health[i] > 0 {
			return i
		}
	}
	return 0
}

// pickLocality picks a locality by its weight times its health (overprovisioned,
// capped at 1), as Envoy's locality weighted balancing does; its healthy hosts, or
// all of them in panic mode.
func (c *Cluster) pickLocality(lv *level, now time.Time, panicMode bool) []*Endpoint {
	type cand struct {
		hosts []*Endpoint
		w     float64
	}
	cands := make([]cand, 0, len(lv.localities))
	var total float64
	for _, g := range lv.localities {
		var ok []*Endpoint
		for _, e := range g.hosts {
			if panicMode || !e.host.ejectedAt(now) {
				ok = append(ok, e)
			}
		}
		h := min(1, float64(overprovisioning)/100*float64(len(ok))/float64(len(g.hosts)))
		w := float64(g.weight) * h
		if w > 0 && len(ok) > 0 {
			cands = append(cands, cand{ok, w})
			total += w
		}
	}
	if total == 0 {
		return nil
	}
	x := rand.Float64() * total
	for _, cd := range cands {
		if x < cd.w {
			return cd.hosts
		}
		x -= cd.w
	}
	return cands[len(cands)-1].hosts
}

// pickRRAmong is round robin over a subset of hosts with the cluster's shared cursor.
func (c *Cluster) pickRRAmong(eps []*Endpoint, exclude *Endpoint) *Endpoint {
	n := uint64(len(eps))
	for range 2 {
		k := c.state.cursor.Add(1) - 1
		var e *Endpoint
		if c.uniform {
			e = eps[k%n]
		} else {
			var total uint64
			for _, x := range eps {
				total += uint64(x.Weight)
			}
			pos := k % total
			for _, x := range eps {
				if pos < uint64(x.Weight) {
					e = x
					break
				}
				pos -= uint64(x.Weight)
			}
		}
		if e != exclude {
			return e
		}
	}
	return eps[(indexOf(eps, exclude)+1)%len(eps)]
}
