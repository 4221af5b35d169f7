// Package capture installs the traffic capture rules of a sidecar, with the same
// effect as Istio's istio-init (istio-iptables): inside the pod's network namespace,
// outbound TCP is redirected to the sidecar's outbound port (15001) except traffic
// from the sidecar's own uid/gid, loopback and excluded ports or ranges; inbound TCP is
// redirected to 15006 except excluded ports; DNS (UDP and TCP port 53) from the app is
// redirected to the sidecar's DNS proxy (15053). The sidecar recovers a connection's
// original destination with SO_ORIGINAL_DST (OriginalDst).
//
// It is one implementation used two ways: `skein up` applies it to every pod namespace
// it creates, and `skein init-capture` exposes it with istio-iptables-like flags so a
// Kubernetes init container runs the very same code.
//
// The rules are rendered as iptables-restore input and applied with one exec of
// iptables-restore: atomic (a pod never runs with half its rules), one process instead
// of one per rule (what a go-iptables based version would cost), the same text that
// --dry-run prints and the golden tests pin, and no new dependency. iptables (legacy or
// nf_tables backend) must be installed.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"skein.dev/skein/internal/model"
)

// Ports and ids used by default, as Istio's.
const (
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
	DefaultDNSPort      = 15053
	DefaultProxyUID     = 1337
	DefaultProxyGID     = 1337
	// InboundPassthroughSource is the source address the sidecar binds when it passes
	// inbound traffic for an undeclared port on to the app at its original
	// destination; the rules let that connection through instead of capturing it again.
	InboundPassthroughSource = "127.0.0.6"
)

// DefaultExcludeInboundPorts are never captured inbound: the sidecar's admin port
// (15000, bound on the pod IP so the runtime can read it) and Istio's reserved health
// and telemetry ports (15020 merged metrics, 15021 health, 15090 Prometheus).
var DefaultExcludeInboundPorts = []int{15000, 15020, 15021, 15090}

// Chain names. They start with SKEIN_ so they never mix with a real istio-init's.
const (
	chainInbound    = "SKEIN_INBOUND"
	chainInRedirect = "SKEIN_IN_REDIRECT"
	chainOutput     = "SKEIN_OUTPUT"
	chainRedirect   = "SKEIN_REDIRECT"
	chainDNS        = "SKEIN_DNS"
	chainPrefix     = "SKEIN_"
)

// Config is one pod's capture setup. The zero value is not valid: start from Defaults.
type Config struct {
	// ProxyUID and ProxyGID identify the sidecar's own traffic, which is never captured
	// (a negative id is not matched).
	ProxyUID, ProxyGID int
	// OutboundPort and InboundPort are the sidecar's capture listeners.
	OutboundPort, InboundPort int
	// InboundPorts are the destination ports captured inbound: All (Istio's "*"), a
	// list, or none (inbound capture off).
	InboundPorts model.PortSet
	// ExcludeInboundPorts are never captured inbound (with InboundPorts All).
	ExcludeInboundPorts []int
	// IncludeOutboundPorts are captured outbound whatever the destination address.
	IncludeOutboundPorts []int
	// ExcludeOutboundPorts are never captured outbound.
	ExcludeOutboundPorts []int
	// IncludeOutboundIPRanges are the destinations captured outbound: All or a list.
	IncludeOutboundIPRanges model.PrefixSet
	// ExcludeOutboundIPRanges are never captured outbound.
	ExcludeOutboundIPRanges []netip.Prefix
	// RedirectDNS sends the app's DNS (UDP and TCP port 53, any server) to DNSPort.
	RedirectDNS bool
	DNSPort     int
}

// Defaults returns Istio's defaults: capture everything in and out, DNS included.
func Defaults() Config {
	return Config{
		ProxyUID:                DefaultProxyUID,
		ProxyGID:                DefaultProxyGID,
		OutboundPort:            DefaultOutboundPort,
		InboundPort:             DefaultInboundPort,
		InboundPorts:            model.PortSet{All: true},
		ExcludeInboundPorts:     append([]int(nil), DefaultExcludeInboundPorts...),
		IncludeOutboundIPRanges: model.PrefixSet{All: true},
		RedirectDNS:             true,
		DNSPort:                 DefaultDNSPort,
	}
}

// WithOverrides applies a workload's annotations on top of c.
func (c Config) WithOverrides(o *model.CaptureOverrides) Config {
	if o == nil {
		return c
	}
	if o.IncludeInboundPorts != nil {
		c.InboundPorts = *o.IncludeInboundPorts
	}
	c.ExcludeInboundPorts = mergePorts(c.ExcludeInboundPorts, o.ExcludeInboundPorts)
	c.IncludeOutboundPorts = mergePorts(c.IncludeOutboundPorts, o.IncludeOutboundPorts)
	c.ExcludeOutboundPorts = mergePorts(c.ExcludeOutboundPorts, o.ExcludeOutboundPorts)
	if o.IncludeOutboundIPRanges != nil {
		c.IncludeOutboundIPRanges = *o.IncludeOutboundIPRanges
	}
	c.ExcludeOutboundIPRanges = append(append([]netip.Prefix(nil), c.ExcludeOutboundIPRanges...), o.ExcludeOutboundIPRanges...)
	return c
}

func mergePorts(a, b []int) []int {
	out := append([]int(nil), a...)
	for _, p := range b {
		if !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func contains(ports []int, p int) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid capture config")

// Validate checks ports and ids.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	checkPort := func(name string, p int) {
		if p < 1 || p > 65535 {
			bad("%s %d out of range 1..65535", name, p)
		}
	}
	checkPort("outbound port", c.OutboundPort)
	checkPort("inbound port", c.InboundPort)
	if c.RedirectDNS {
		checkPort("DNS port", c.DNSPort)
	}
	if c.ProxyUID < 0 && c.ProxyGID < 0 {
		bad("one of proxy uid and gid is required: the sidecar's own traffic must not be captured")
	}
	for _, list := range [][]int{c.InboundPorts.Ports, c.ExcludeInboundPorts, c.IncludeOutboundPorts, c.ExcludeOutboundPorts} {
		for _, p := range list {
			checkPort("port", p)
		}
	}
	for _, p := range append(append([]netip.Prefix(nil), c.IncludeOutboundIPRanges.Prefixes...), c.ExcludeOutboundIPRanges...) {
		if !p.IsValid() || !p.Addr().Is4() {
			bad("%v is not an IPv4 CIDR", p)
		}
	}
	return errors.Join(errs...)
}

// Rules renders the nat table rules as iptables-restore input (without flushing other
// chains: Apply merges them with what the table holds). Rules are evaluated in order:
//
// Inbound (PREROUTING: packets from other hosts or pods): excluded ports return, the
// rest (or only the included ports) is redirected to InboundPort.
//
// Outbound (OUTPUT: connections made in the pod), first rule that matches wins:
//  1. from InboundPassthroughSource on loopback: the sidecar passing inbound traffic on
//     to the app; not captured;
//  2. DNS over TCP from anyone but the sidecar: to DNSPort;
//  3. the sidecar calling its own pod IP (a service whose endpoint is this pod): to
//     InboundPort, so it goes through the inbound path like any peer's call;
//  4. any other loopback traffic of the app, and everything of the sidecar: not captured;
//  5. to 127.0.0.1, excluded ports: not captured; included ports: captured;
//  6. excluded ranges: not captured; included ranges (or all): to OutboundPort.
//
// UDP to port 53 from anyone but the sidecar goes to DNSPort.
func (c Config) Rules() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	owners := func(chain, match, target string) {
		if c.ProxyUID >= 0 {
			w("-A %s %s-m owner --uid-owner %d -j %s", chain, match, c.ProxyUID, target)
		}
		if c.ProxyGID >= 0 {
			w("-A %s %s-m owner --gid-owner %d -j %s", chain, match, c.ProxyGID, target)
		}
	}
	inbound := c.InboundPorts.All || len(c.InboundPorts.Ports) > 0
	w("*nat")
	for _, ch := range []string{chainInbound, chainInRedirect, chainOutput, chainRedirect, chainDNS} {
		w(":%s - [0:0]", ch)
	}
	w("-A %s -p tcp -j REDIRECT --to-ports %d", chainInRedirect, c.InboundPort)
	w("-A %s -p tcp -j REDIRECT --to-ports %d", chainRedirect, c.OutboundPort)
	if inbound {
		w("-A PREROUTING -p tcp -j %s", chainInbound)
		if c.InboundPorts.All {
			for _, p := range c.ExcludeInboundPorts {
				w("-A %s -p tcp -m tcp --dport %d -j RETURN", chainInbound, p)
			}
			w("-A %s -p tcp -j %s", chainInbound, chainInRedirect)
		} else {
			for _, p := range c.InboundPorts.Ports {
				if !contains(c.ExcludeInboundPorts, p) {
					w("-A %s -p tcp -m tcp --dport %d -j %s", chainInbound, p, chainInRedirect)
				}
			}
		}
	}
	w("-A OUTPUT -p tcp -j %s", chainOutput)
	w("-A %s -s %s/32 -o lo -j RETURN", chainOutput, InboundPassthroughSource)
	if c.RedirectDNS {
		w("-A %s -p tcp -m tcp --dport 53 -j %s", chainOutput, chainDNS)
	}
	if inbound {
		owners(chainOutput, "! -d 127.0.0.1/32 -o lo ", chainInRedirect)
	}
	if c.ProxyUID >= 0 {
		w("-A %s -o lo -m owner ! --uid-owner %d -j RETURN", chainOutput, c.ProxyUID)
	} else {
		w("-A %s -o lo -m owner ! --gid-owner %d -j RETURN", chainOutput, c.ProxyGID)
	}
	owners(chainOutput, "", "RETURN")
	w("-A %s -d 127.0.0.1/32 -j RETURN", chainOutput)
	for _, p := range c.ExcludeOutboundPorts {
		w("-A %s -p tcp -m tcp --dport %d -j RETURN", chainOutput, p)
	}
	for _, p := range c.IncludeOutboundPorts {
		w("-A %s -p tcp -m tcp --dport %d -j %s", chainOutput, p, chainRedirect)
	}
	for _, p := range c.ExcludeOutboundIPRanges {
		w("-A %s -d %s -j RETURN", chainOutput, p)
	}
	if c.IncludeOutboundIPRanges.All {
		w("-A %s -j %s", chainOutput, chainRedirect)
	} else {
		for _, p := range c.IncludeOutboundIPRanges.Prefixes {
			w("-A %s -d %s -j %s", chainOutput, p, chainRedirect)
		}
	}
	if c.RedirectDNS {
		w("-A OUTPUT -p udp -m udp --dport 53 -j %s", chainDNS)
		owners(chainDNS, "", "RETURN")
		w("-A %s -p udp -j REDIRECT --to-ports %d", chainDNS, c.DNSPort)
		w("-A %s -p tcp -j REDIRECT --to-ports %d", chainDNS, c.DNSPort)
	}
	w("COMMIT")
	return b.String()
}

// Args renders c as `skein init-capture` flags, for logs and for an init container spec.
func (c Config) Args() []string {
	args := []string{
		"--proxy-uid", strconv.Itoa(c.ProxyUID),
		"--proxy-gid", strconv.Itoa(c.ProxyGID),
		"--outbound-port", strconv.Itoa(c.OutboundPort),
		"--inbound-capture-port", strconv.Itoa(c.InboundPort),
		"--inbound-ports", c.InboundPorts.String(),
		"--exclude-inbound-ports", joinPorts(c.ExcludeInboundPorts),
		"--include-outbound-ports", joinPorts(c.IncludeOutboundPorts),
		"--exclude-outbound-ports", joinPorts(c.ExcludeOutboundPorts),
		"--include-outbound-ip-ranges", c.IncludeOutboundIPRanges.String(),
		"--exclude-outbound-ip-ranges", (model.PrefixSet{Prefixes: c.ExcludeOutboundIPRanges}).String(),
		"--redirect-dns=" + strconv.FormatBool(c.RedirectDNS),
		"--dns-port", strconv.Itoa(c.DNSPort),
	}
	return args
}

func joinPorts(p []int) string { return (model.PortSet{Ports: p}).String() }
