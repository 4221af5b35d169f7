package model

import "net/netip"

// L4Conditions are the conditions of a VirtualService tcp or tls match besides the
// port: the connection's destination address, and who the caller is. Like HTTP
// source conditions they are decided per proxy at translation; the destination is
// the service's VIP, the address a captured client connects to.
type L4Conditions struct {
	// DestinationSubnets are CIDRs (a bare IP is a /32); empty means any.
	DestinationSubnets []string          `json:"destinationSubnets,omitempty"`
	SourceLabels       map[string]string `json:"sourceLabels,omitempty"`
	SourceNamespace    string            `json:"sourceNamespace,omitempty"`
}

// Applies reports whether the conditions hold for connections from proxy p (nil: a
// caller without identity, which only unconditioned sources match) to a service whose
// VIP is vip.
func (c L4Conditions) Applies(vip string, p *Proxy) bool {
	src := HTTPMatch{SourceLabels: c.SourceLabels, SourceNamespace: c.SourceNamespace}
	if !src.AppliesToSource(p) {
		return false
	}
	if len(c.DestinationSubnets) == 0 {
		return true
	}
	a, err := netip.ParseAddr(vip)
	if err != nil {
		return false
	}
	for _, s := range c.DestinationSubnets {
		if pfx, err := ParseSubnet(s); err == nil && pfx.Contains(a) {
			return true
		}
	}
	return false
}

// ParseSubnet reads a CIDR or a bare IP (a single-address prefix).
func ParseSubnet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TLSRoute forwards TLS connections, unterminated, by the server name of their
// ClientHello (Istio's VirtualService tls routes: TLS passthrough).
type TLSRoute struct {
	// SNIHosts are server names, exact or "*.suffix"; at least one.
	SNIHosts []string `json:"sniHosts"`
	// Port restricts the route to one service port; 0 means any.
	Port int `json:"port,omitempty"`
	L4Conditions
	Destinations []RouteDestination `json:"destinations"`
}
