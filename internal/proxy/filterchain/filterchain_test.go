package filterchain

import (
	"net/netip"
	"testing"

	"skein.dev/skein/internal/proxy/resource"
)

func TestSelect(t *testing.T) {
	pfx := netip.MustParsePrefix
	httpProtos := []string{"http/1.1", "http/1.0", "h2c"}
	// Shaped like skein's virtualOutbound: a TCP service VIP, a sniffed VIP (HTTP and
	// TCP chains), a port-wide HTTP chain, a TLS SNI chain; plus a generic catch-all.
	chains := []resource.FilterChainMatch{
		0: {DestinationPort: 9000, PrefixRanges: []netip.Prefix{pfx("240.240.0.9/32")}},
		1: {DestinationPort: 6379, PrefixRanges: []netip.Prefix{pfx("240.240.0.7/32")}, ApplicationProtocols: httpProtos},
		2: {DestinationPort: 6379, PrefixRanges: []netip.Prefix{pfx("240.240.0.7/32")}},
		3: {DestinationPort: 8080},
		4: {DestinationPort: 443, ServerNames: []string{"api.example.com"}, TransportProtocol: "tls"},
		5: {DestinationPort: 443, ServerNames: []string{"*.example.com"}, TransportProtocol: "tls"},
		6: {PrefixRanges: []netip.Prefix{pfx("10.0.0.0/8")}},
		7: {PrefixRanges: []netip.Prefix{pfx("10.1.0.0/16")}},
		8: {TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"h2c"}},
	}
	m := New(chains)
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		ci   ConnInfo
		want int
	}{
		{"tcp VIP", ConnInfo{Dst: ap("240.240.0.9:9000")}, 0},
		{"tcp port, other IP: no port-9000 chain for it, no fallback", ConnInfo{Dst: ap("1.2.3.4:9000")}, -1},
		{"sniffed VIP speaking HTTP", ConnInfo{Dst: ap("240.240.0.7:6379"), ApplicationProtocols: []string{"http/1.1"}}, 1},
		{"sniffed VIP speaking something else", ConnInfo{Dst: ap("240.240.0.7:6379")}, 2},
		{"port-wide HTTP chain for any IP", ConnInfo{Dst: ap("240.240.0.3:8080")}, 3},
		{"exact SNI", ConnInfo{Dst: ap("1.1.1.1:443"), ServerName: "api.example.com", TransportProtocol: "tls"}, 4},
		{"wildcard SNI", ConnInfo{Dst: ap("1.1.1.1:443"), ServerName: "www.example.com", TransportProtocol: "tls"}, 5},
		{"SNI of no chain: port 443 chains all need one", ConnInfo{Dst: ap("1.1.1.1:443"), ServerName: "other.org", TransportProtocol: "tls"}, -1},
		{"no SNI on 443", ConnInfo{Dst: ap("1.1.1.1:443")}, -1},
		{"longest prefix wins", ConnInfo{Dst: ap("10.1.2.3:80")}, 7},
		{"shorter prefix", ConnInfo{Dst: ap("10.2.2.3:80")}, 6},
		{"no port, no prefix: catch-all needs h2c", ConnInfo{Dst: ap("8.8.8.8:80"), ApplicationProtocols: []string{"h2c"}}, 8},
		{"no port, no prefix, not h2c: none", ConnInfo{Dst: ap("8.8.8.8:80")}, -1},
		{"tls does not match raw_buffer chain", ConnInfo{Dst: ap("8.8.8.8:80"), TransportProtocol: "tls", ApplicationProtocols: []string{"h2c"}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Select(tt.ci); got != tt.want {
				t.Errorf("Select = %d, want %d", got, tt.want)
			}
		})
	}
	if got := New(nil).Select(ConnInfo{Dst: ap("1.2.3.4:5")}); got != -1 {
		t.Errorf("no chains: %d", got)
	}
	if got := New([]resource.FilterChainMatch{{}}).Select(ConnInfo{Dst: ap("1.2.3.4:5")}); got != 0 {
		t.Errorf("one empty match takes everything: %d", got)
	}
}
