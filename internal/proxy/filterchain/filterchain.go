// Package filterchain picks a listener's filter chain for a connection the way Envoy's
// FilterChainMatch does: criteria are applied in a fixed order (destination port,
// destination IP, server name, transport protocol, application protocols) and each
// keeps only the most specific chains that match, falling back to chains that do not
// set the criterion. There is no backtracking: once a more specific chain matched a
// criterion, chains that do not set it are out, even if a later criterion fails (then
// the listener's default chain, if any, takes the connection).
package filterchain

import (
	"net/netip"
	"slices"
	"strings"

	"skein.dev/skein/internal/proxy/resource"
)

// ConnInfo is what is known about a connection when its chain is chosen.
type ConnInfo struct {
	// Dst is the connection's destination: the restored original destination when the
	// listener has original_dst, else the socket's local address.
	Dst netip.AddrPort
	// ServerName is the TLS SNI, lower case; "" when none.
	ServerName string
	// TransportProtocol is "tls" when TLS was detected, else "raw_buffer".
	TransportProtocol string
	// ApplicationProtocols are the TLS ALPN offers or the detected plaintext protocol
	// ("http/1.1", "http/1.0", "h2c").
	ApplicationProtocols []string
}

// Matcher selects among a listener's filter chains. It is immutable.
type Matcher struct {
	matches []resource.FilterChainMatch
}

// New compiles the matches of a listener's filter chains, in order.
func New(matches []resource.FilterChainMatch) *Matcher {
	return &Matcher{matches: matches}
}

// Select returns the index of the chain for the connection, or -1 when none matches.
func (m *Matcher) Select(ci ConnInfo) int {
	if ci.TransportProtocol == "" {
		ci.TransportProtocol = "raw_buffer"
	}
	cand := make([]int, len(m.matches))
	for i := range cand {
		cand[i] = i
	}
	steps := []func([]int, ConnInfo) []int{m.byPort, m.byIP, m.byServerName, m.byTransport, m.byALPN}
	for _, step := range steps {
		if cand = step(cand, ci); len(cand) == 0 {
			return -1
		}
	}
	return cand[0]
}

// pick keeps the candidates with the best score; score -1 means "does not match",
// 0 "does not set the criterion". Higher is more specific.
func pick(cand []int, score func(i int) int) []int {
	best := -1
	var out []int
	for _, i := range cand {
		s := score(i)
		switch {
		case s < 0:
		case s > best:
			best, out = s, []int{i}
		case s == best:
			out = append(out, i)
		}
	}
	return out
}

func (m *Matcher) byPort(cand []int, ci ConnInfo) []int {
	return pick(cand, func(i int) int {
		switch p := m.matches[i].DestinationPort; {
		case p == 0:
			return 0
		case p == int(ci.Dst.Port()):
			return 1
		}
		return -1
	})
}

func (m *Matcher) byIP(cand []int, ci ConnInfo) []int {
	addr := ci.Dst.Addr().Unmap()
	return pick(cand, func(i int) int {
		ranges := m.matches[i].PrefixRanges
		if len(ranges) == 0 {
			return 0
		}
		best := -1
		for _, p := range ranges {
			if p.Contains(addr) && p.Bits()+1 > best {
				best = p.Bits() + 1 // a /0 still beats "not set"
			}
		}
		return best
	})
}

func (m *Matcher) byServerName(cand []int, ci ConnInfo) []int {
	return pick(cand, func(i int) int {
		names := m.matches[i].ServerNames
		if len(names) == 0 {
			return 0
		}
		best := -1
		for _, n := range names {
			switch {
			case ci.ServerName == "":
			case n == ci.ServerName:
				best = max(best, 1<<16) // exact beats any wildcard
			case strings.HasPrefix(n, "*") && strings.HasSuffix(ci.ServerName, n[1:]) && len(ci.ServerName) > len(n)-1:
				best = max(best, len(n))
			}
		}
		return best
	})
}

func (m *Matcher) byTransport(cand []int, ci ConnInfo) []int {
	return pick(cand, func(i int) int {
		switch tp := m.matches[i].TransportProtocol; tp {
		case "":
			return 0
		case ci.TransportProtocol:
			return 1
		}
		return -1
	})
}

func (m *Matcher) byALPN(cand []int, ci ConnInfo) []int {
	return pick(cand, func(i int) int {
		protos := m.matches[i].ApplicationProtocols
		if len(protos) == 0 {
			return 0
		}
		for _, p := range ci.ApplicationProtocols {
			if slices.Contains(protos, p) {
				return 1
			}
		}
		return -1
	})
}
