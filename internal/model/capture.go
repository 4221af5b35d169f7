package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// OutboundTrafficPolicy says what a captured sidecar does with a connection to an
// address that is no mesh service, as Istio's meshConfig.outboundTrafficPolicy.mode.
type OutboundTrafficPolicy string

const (
	// OutboundAllowAny (the default) forwards such connections to their original
	// destination (PassthroughCluster).
	OutboundAllowAny OutboundTrafficPolicy = "ALLOW_ANY"
	// OutboundRegistryOnly refuses them (BlackHoleCluster).
	OutboundRegistryOnly OutboundTrafficPolicy = "REGISTRY_ONLY"
)

// ParseOutboundTrafficPolicy accepts ALLOW_ANY and REGISTRY_ONLY (any case); "" is ALLOW_ANY.
func ParseOutboundTrafficPolicy(s string) (OutboundTrafficPolicy, error) {
	switch p := OutboundTrafficPolicy(strings.ToUpper(s)); p {
	case "", OutboundAllowAny:
		return OutboundAllowAny, nil
	case OutboundRegistryOnly:
		return p, nil
	}
	return "", fmt.Errorf("outbound traffic policy %q: want ALLOW_ANY or REGISTRY_ONLY", s)
}

// RegistryOnly reports whether the mesh refuses traffic to unknown destinations.
func (m *Mesh) RegistryOnly() bool { return m.OutboundTrafficPolicy == OutboundRegistryOnly }

// DefaultProtocolDetectionTimeout is how long a captured sidecar waits for the first
// bytes of a connection on a port whose protocol is not declared, before treating it as
// opaque TCP. Istio's default is 0 (wait forever), which stalls protocols where the
// server speaks first (MySQL, SMTP) until the client gives up; skein waits 100 ms,
// long enough for any client-first protocol on one machine and short enough that a
// server-first one only sees a small delay on its first byte.
const DefaultProtocolDetectionTimeout = 100 * time.Millisecond

// DetectionTimeout returns the protocol detection timeout in effect: the configured one,
// the default when unset (0), or 0 (no timeout) when set negative.
func (m *Mesh) DetectionTimeout() time.Duration {
	switch {
	case m.ProtocolDetectionTimeout == 0:
		return DefaultProtocolDetectionTimeout
	case m.ProtocolDetectionTimeout < 0:
		return 0
	}
	return m.ProtocolDetectionTimeout
}

// CaptureOverrides are a workload's changes to the default capture rules, from Istio's
// pod annotations traffic.sidecar.istio.io/{include,exclude}{Inbound,Outbound}Ports and
// {include,exclude}OutboundIPRanges. Nil fields keep the default.
type CaptureOverrides struct {
	IncludeInboundPorts     *PortSet       `json:"includeInboundPorts,omitempty"`
	ExcludeInboundPorts     []int          `json:"excludeInboundPorts,omitempty"`
	IncludeOutboundPorts    []int          `json:"includeOutboundPorts,omitempty"`
	ExcludeOutboundPorts    []int          `json:"excludeOutboundPorts,omitempty"`
	IncludeOutboundIPRanges *PrefixSet     `json:"includeOutboundIPRanges,omitempty"`
	ExcludeOutboundIPRanges []netip.Prefix `json:"excludeOutboundIPRanges,omitempty"`
}

// PortSet is "*" (all ports) or a list of ports; the zero value is no port.
type PortSet struct {
	All   bool  `json:"all,omitempty"`
	Ports []int `json:"ports,omitempty"`
}

func (s PortSet) String() string {
	if s.All {
		return "*"
	}
	return joinInts(s.Ports)
}

// PrefixSet is "*" (every address) or a list of CIDRs; the zero value is no address.
type PrefixSet struct {
	All      bool           `json:"all,omitempty"`
	Prefixes []netip.Prefix `json:"prefixes,omitempty"`
}

func (s PrefixSet) String() string {
	if s.All {
		return "*"
	}
	parts := make([]string, len(s.Prefixes))
	for i, p := range s.Prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ErrBadList is wrapped by port and CIDR list parse errors.
var ErrBadList = errors.New("invalid list")

// ParsePortSet parses "*" or a comma-separated list of ports ("" is the empty set), as
// Istio's annotations and istio-iptables flags take them.
func ParsePortSet(s string) (PortSet, error) {
	if strings.TrimSpace(s) == "*" {
		return PortSet{All: true}, nil
	}
	ports, err := ParsePorts(s)
	return PortSet{Ports: ports}, err
}

// ParsePorts parses a comma-separated list of ports in 1..65535, sorted and without
// duplicates; "" is the empty list.
func ParsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %q: want a number in 1..65535", ErrBadList, f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParsePrefixSet parses "*" or a comma-separated list of IPv4 CIDRs (a bare address
// is a /32).
func ParsePrefixSet(s string) (PrefixSet, error) {
	if strings.TrimSpace(s) == "*" {
		return PrefixSet{All: true}, nil
	}
	p, err := ParsePrefixes(s)
	return PrefixSet{Prefixes: p}, err
}

// ParsePrefixes parses a comma-separated list of IPv4 CIDRs, masked to their network.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(s) {
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("%w: %q is not an IPv4 CIDR", ErrBadList, f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}
