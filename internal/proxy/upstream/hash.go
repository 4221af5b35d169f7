package upstream

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Consistent hashing as Envoy does it: xxHash64 everywhere, ring entries keyed
// "<address>_<n>", Maglev offsets and skips from seeds 0 and 1.

// HashString hashes a request key (header value, cookie, query value, source IP).
func HashString(s string) uint64 { return xxhash.Sum64String(s) }

func hashSeeded(s string, seed uint64) uint64 {
	d := xxhash.NewWithSeed(seed)
	_, _ = d.WriteString(s)
	return d.Sum64()
}

// hashRing is a ring hash: each host owns points in proportion to its weight.
type hashRing struct {
	hashes []uint64
	hosts  []*Endpoint
}

func newHashRing(hosts []*Endpoint, minSize, maxSize uint64) *hashRing {
	if len(hosts) == 0 {
		return &hashRing{}
	}
	var total, minW float64 = 0, math.MaxFloat64
	for _, h := range hosts {
		total += float64(h.Weight)
		minW = min(minW, float64(h.Weight)/1)
	}
	// Envoy: scale so the lightest host gets at least one entry and the ring at least
	// minSize entries, without exceeding maxSize.
	scale := min(math.Ceil(minW/total*float64(minSize))*total/minW, float64(maxSize)) / total
	type point struct {
		hash uint64
		host *Endpoint
	}
	var points []point
	for _, h := range hosts {
		n := int(math.Ceil(float64(h.Weight) * scale))
		for i := range n {
			points = append(points, point{HashString(h.Address + "_" + strconv.Itoa(i)), h})
		}
	}
	sort.Slice(points, func(i, j int) bool { return points[i].hash < points[j].hash })
	r := &hashRing{hashes: make([]uint64, len(points)), hosts: make([]*Endpoint, len(points))}
	for i, p := range points {
		r.hashes[i], r.hosts[i] = p.hash, p.host
	}
	return r
}

// lookup returns the ring position of the first point at or after hash.
func (r *hashRing) lookup(hash uint64) int {
	i := sort.Search(len(r.hashes), func(i int) bool { return r.hashes[i] >= hash })
	if i == len(r.hashes) {
		i = 0
	}
	return i
}

// maglevTable is Google's Maglev lookup table, weighted as Envoy weights it.
type maglevTable struct {
	table []uint32 // index into hosts
	hosts []*Endpoint
}

func newMaglevTable(hosts []*Endpoint, size uint64) *maglevTable {
	t := &maglevTable{hosts: hosts}
	if len(hosts) == 0 {
		return t
	}
	type entry struct {
		offset, skip, next uint64
		weight, target     float64
	}
	var maxW float64
	for _, h := range hosts {
		maxW = max(maxW, float64(h.Weight))
	}
	entries := make([]entry, len(hosts))
	for i, h := range hosts {
		entries[i] = entry{
			offset: hashSeeded(h.Address, 0) % size,
			skip:   hashSeeded(h.Address, 1)%(size-1) + 1,
			weight: float64(h.Weight) / maxW,
		}
	}
	t.table = make([]uint32, size)
	filled := make([]bool, size)
	var n uint64
	for iteration := 1.0; n < size; iteration++ {
		for i := range entries {
			e := &entries[i]
			if iteration*e.weight < e.target {
				continue
			}
			e.target++
			for {
				c := (e.offset + e.next*e.skip) % size
				e.next++
				if !filled[c] {
					filled[c] = true
					t.table[c] = uint32(i)
					n++
					break
				}
			}
			if n == size {
				break
			}
		}
	}
	return t
}

// pickHash finds the request's host on the level's ring or table, moving on past
// ejected hosts (and the excluded one) as a ring rebuilt without them would; with no
// hash (the key is missing from the request) it picks at random, as Envoy does.
func (c *Cluster) pickHash(cands []*Endpoint, lv *level, r Request) *Endpoint {
	if !r.HasHash {
		e := cands[rand.IntN(len(cands))]
		if e == r.Exclude && len(cands) > 1 {
			e = cands[(indexOf(cands, e)+1)%len(cands)]
		}
		return e
	}
	if r.Exclude == nil && len(cands) == len(lv.hosts) {
		// Nothing to skip: the table's answer stands.
		switch {
		case lv.ring != nil && len(lv.ring.hosts) > 0:
			return lv.ring.hosts[lv.ring.lookup(r.Hash)]
		case lv.maglev != nil && len(lv.maglev.table) > 0:
			return lv.maglev.hosts[lv.maglev.table[r.Hash%uint64(len(lv.maglev.table))]]
		}
	}
	allowed := make(map[*Endpoint]bool, len(cands))
	for _, e := range cands {
		allowed[e] = e != r.Exclude || len(cands) == 1
	}
	switch {
	case lv.ring != nil && len(lv.ring.hosts) > 0:
		start := lv.ring.lookup(r.Hash)
		for k := range len(lv.ring.hosts) {
			if e := lv.ring.hosts[(start+k)%len(lv.ring.hosts)]; allowed[e] {
				return e
			}
		}
	case lv.maglev != nil && len(lv.maglev.table) > 0:
		size := uint64(len(lv.maglev.table))
		for k := range uint64(len(lv.maglev.hosts)) * 4 {
			if e := lv.maglev.hosts[lv.maglev.table[(r.Hash+k)%size]]; allowed[e] {
				return e
			}
		}
	}
	return cands[0]
}
