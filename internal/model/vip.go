package model

import (
	"hash/fnv"
	"net/netip"
	"sort"
)

// VIPRange is where services without a spec.clusterIP get their virtual IP, the range
// Istio's DNS auto-allocation uses: 240.0.0.0/4 is reserved (class E), so a VIP never
// shadows a real address, and a captured connection to it always reaches the sidecar.
var VIPRange = netip.MustParsePrefix("240.240.0.0/16")

// AllocateVIPs gives every service without a VIP one from VIPRange. The address comes
// from a hash of namespace/name, so it stays the same across restarts and unrelated
// config edits; on a collision the later service (by namespace, then name) takes the
// next free address. Services that have a VIP keep it. It sets Service.VIP in place, so
// call it while building a Mesh, before the Mesh is shared.
func AllocateVIPs(services []*Service) {
	const size = 1 << 16 // VIPRange's addresses; .0.0 and .255.255 are skipped
	taken := map[uint32]bool{}
	base := VIPRange.Addr().As4()
	offsetOf := func(a netip.Addr) (uint32, bool) {
		if !VIPRange.Contains(a) {
			return 0, false
		}
		b := a.As4()
		return uint32(b[2])<<8 | uint32(b[3]), true
	}
	var todo []*Service
	for _, s := range services {
		if s.VIP == "" {
			if s.Entry != nil && s.Entry.Resolution == ResolutionNone {
				// Clients of a resolution NONE ServiceEntry connect to the host's real
				// addresses (its own DNS), so a VIP would only hide them.
				continue
			}
			todo = append(todo, s)
			continue
		}
		if a, err := netip.ParseAddr(s.VIP); err == nil {
			if off, ok := offsetOf(a); ok {
				taken[off] = true
			}
		}
	}
	sort.Slice(todo, func(i, j int) bool {
		if todo[i].Namespace != todo[j].Namespace {
			return todo[i].Namespace < todo[j].Namespace
		}
		return todo[i].Name < todo[j].Name
	})
	for _, s := range todo {
		h := fnv.New32a()
		h.Write([]byte(s.Namespace + "/" + s.Name))
		off := h.Sum32()%(size-2) + 1
		for taken[off] {
			off = off%(size-2) + 1
		}
		taken[off] = true
		s.VIP = netip.AddrFrom4([4]byte{base[0], base[1], byte(off >> 8), byte(off)}).String()
	}
}
