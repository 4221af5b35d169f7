package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/capture"
	"skein.dev/skein/internal/model"
)

// newInitCaptureCmd is istio-init's job as a command: install the capture rules in the
// current network namespace (a Kubernetes init container) or in a named one.
func newInitCaptureCmd() *cobra.Command {
	c := capture.Defaults()
	var (
		inboundPorts, excludeInbound, includeOutboundPorts, excludeOutboundPorts string
		includeRanges, excludeRanges, netnsName                                  string
		dryRun, cleanup                                                          bool
	)
	cmd := &cobra.Command{
		Use:   "init-capture",
		Short: "Install the sidecar's traffic capture rules (iptables), as istio-init does",
		Long: `init-capture redirects a pod's TCP traffic to its sidecar: outbound to the outbound
port (15001) except the sidecar's own (by uid/gid), loopback and excluded ports and
ranges; inbound to 15006 except excluded ports; DNS (port 53) to the sidecar's DNS
proxy. It runs in the current network namespace (an init container) or, with --netns,
in a named one. Rules are applied in one iptables-restore transaction and replace
skein rules already there. --dry-run prints them instead.`,
		Example: `  skein init-capture --proxy-uid 1337 --exclude-inbound-ports 15000,15020,15021,15090
  skein init-capture --dry-run --exclude-outbound-ip-ranges 10.0.0.0/8
  skein init-capture --cleanup --netns mypod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			parse := func(flag, v string, f func(string) error) {
				if err == nil {
					if e := f(v); e != nil {
						err = fmt.Errorf("--%s: %w", flag, e)
					}
				}
			}
			parse("inbound-ports", inboundPorts, func(s string) (e error) { c.InboundPorts, e = model.ParsePortSet(s); return })
			parse("exclude-inbound-ports", excludeInbound, func(s string) (e error) { c.ExcludeInboundPorts, e = model.ParsePorts(s); return })
			parse("include-outbound-ports", includeOutboundPorts, func(s string) (e error) { c.IncludeOutboundPorts, e = model.ParsePorts(s); return })
			parse("exclude-outbound-ports", excludeOutboundPorts, func(s string) (e error) { c.ExcludeOutboundPorts, e = model.ParsePorts(s); return })
			parse("include-outbound-ip-ranges", includeRanges, func(s string) (e error) { c.IncludeOutboundIPRanges, e = model.ParsePrefixSet(s); return })
			parse("exclude-outbound-ip-ranges", excludeRanges, func(s string) (e error) { c.ExcludeOutboundIPRanges, e = model.ParsePrefixes(s); return })
			if err != nil {
				return err
			}
			run := capture.Local
			if netnsName != "" {
				run = capture.InNetns(netnsName)
			}
			if cleanup {
				return capture.Cleanup(cmd.Context(), run)
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if dryRun {
				_, err := fmt.Fprint(cmd.OutOrStdout(), c.Rules())
				return err
			}
			return capture.Apply(cmd.Context(), run, c)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&c.ProxyUID, "proxy-uid", "u", c.ProxyUID, "uid of the sidecar, whose traffic is not captured (-1: none)")
	f.IntVarP(&c.ProxyGID, "proxy-gid", "g", c.ProxyGID, "gid of the sidecar, whose traffic is not captured (-1: none)")
	f.IntVarP(&c.OutboundPort, "outbound-port", "p", c.OutboundPort, "sidecar port receiving captured outbound traffic")
	f.IntVarP(&c.InboundPort, "inbound-capture-port", "z", c.InboundPort, "sidecar port receiving captured inbound traffic")
	f.StringVarP(&inboundPorts, "inbound-ports", "b", "*", `inbound ports to capture: "*" (all), a comma-separated list, or "" (none)`)
	f.StringVarP(&excludeInbound, "exclude-inbound-ports", "d", joinInts(capture.DefaultExcludeInboundPorts), "inbound ports never captured (with --inbound-ports *)")
	f.StringVarP(&includeOutboundPorts, "include-outbound-ports", "q", "", "outbound ports captured whatever the destination address")
	f.StringVarP(&excludeOutboundPorts, "exclude-outbound-ports", "o", "", "outbound ports never captured")
	f.StringVarP(&includeRanges, "include-outbound-ip-ranges", "i", "*", `destination CIDRs captured: "*" (all) or a comma-separated list`)
	f.StringVarP(&excludeRanges, "exclude-outbound-ip-ranges", "x", "", "destination CIDRs never captured")
	f.BoolVar(&c.RedirectDNS, "redirect-dns", c.RedirectDNS, "send the app's DNS (UDP and TCP port 53) to --dns-port")
	f.IntVar(&c.DNSPort, "dns-port", c.DNSPort, "the sidecar's DNS proxy port")
	f.StringVar(&netnsName, "netns", "", "apply in this named network namespace (/run/netns/NAME) instead of the current one")
	f.BoolVar(&dryRun, "dry-run", false, "print the iptables-restore input instead of applying it")
	f.BoolVar(&cleanup, "cleanup", false, "remove the capture rules instead (as istio-clean-iptables)")
	return cmd
}

func joinInts(v []int) string {
	s := ""
	for i, n := range v {
		if i > 0 {
			s += ","
		}
		s += strconv.Itoa(n)
	}
	return s
}
