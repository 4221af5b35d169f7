package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dnsfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/dns_filter/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
)

const (
	dnsFilterTypeURL = "type.googleapis.com/envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig"
	caresTypeURL     = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"
	// defaultAnswerTTL is Envoy's DnsVirtualDomain.answer_ttl default.
	defaultAnswerTTL = 300 * time.Second
	// defaultResolverTimeout is Envoy's ClientContextConfig.resolver_timeout default.
	defaultResolverTimeout = 5 * time.Second
)

// udpListener decodes a UDP listener: exactly one listener filter, the DNS filter.
func (d *Decoder) udpListener(pb *listenerv3.Listener, l *Listener) (*Listener, error) {
	l.UDP = true
	if len(pb.GetFilterChains()) > 0 || pb.GetDefaultFilterChain() != nil {
		return nil, errors.New("filter_chains: a UDP listener has listener filters only")
	}
	if n := len(pb.GetListenerFilters()); n != 1 {
		return nil, fmt.Errorf("listener_filters: a UDP listener wants exactly 1 (envoy.filters.udp.dns_filter), got %d", n)
	}
	lf := pb.GetListenerFilters()[0]
	if lf.GetFilterDisabled() != nil {
		return nil, errors.New("listener_filters[0].filter_disabled: not supported on UDP listeners")
	}
	tc := lf.GetTypedConfig()
	if tc.GetTypeUrl() != dnsFilterTypeURL {
		return nil, fmt.Errorf("listener_filters[0].typed_config: want %s, got %q", dnsFilterTypeURL, tc.GetTypeUrl())
	}
	cfg := &dnsfilterv3.DnsFilterConfig{}
	if err := tc.UnmarshalTo(cfg); err != nil {
		return nil, err
	}
	dns, err := dnsFilter(cfg)
	if err != nil {
		return nil, fmt.Errorf("listener_filters[0]: DnsFilterConfig.%w", err)
	}
	l.DNS = dns
	return l, nil
}

func dnsFilter(pb *dnsfilterv3.DnsFilterConfig) (*DNSFilter, error) {
	if pb.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix: %w", errMissing)
	}
	f := &DNSFilter{StatPrefix: pb.GetStatPrefix(), ResolverTimeout: defaultResolverTimeout}
	table := pb.GetServerConfig().GetInlineDnsTable()
	if pb.GetServerConfig() != nil && table == nil {
		return nil, errors.New("server_config: only inline_dns_table is supported")
	}
	seen := map[string]bool{}
	for i, vd := range table.GetVirtualDomains() {
		field := fmt.Sprintf("server_config.inline_dns_table.virtual_domains[%d]", i)
		name := strings.TrimSuffix(strings.ToLower(vd.GetName()), ".")
		if name == "" {
			return nil, fmt.Errorf("%s.name: %w", field, errMissing)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s.name: %q appears twice", field, name)
		}
		seen[name] = true
		list := vd.GetEndpoint().GetAddressList()
		if list == nil || len(list.GetAddress()) == 0 {
			return nil, fmt.Errorf("%s.endpoint.address_list: %w (cluster_name and service_list are not supported)", field, errMissing)
		}
		e := DNSName{Name: name, TTL: defaultAnswerTTL}
		for j, s := range list.GetAddress() {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%s.endpoint.address_list.address[%d]: %w", field, j, err)
			}
			e.Addresses = append(e.Addresses, a)
		}
		if t := vd.GetAnswerTtl(); t != nil {
			if err := t.CheckValid(); err != nil || t.AsDuration() < time.Second {
				return nil, fmt.Errorf("%s.answer_ttl: must be at least 1s, got %v", field, t)
			}
			e.TTL = t.AsDuration()
		}
		f.Table = append(f.Table, e)
	}
	if cc := pb.GetClientConfig(); cc != nil {
		f.Forward = true
		if t := cc.GetResolverTimeout(); t != nil {
			if err := t.CheckValid(); err != nil || t.AsDuration() < time.Second {
				return nil, fmt.Errorf("client_config.resolver_timeout: must be at least 1s, got %v", t)
			}
			f.ResolverTimeout = t.AsDuration()
		}
		if trc := cc.GetTypedDnsResolverConfig(); trc != nil {
			tc := trc.GetTypedConfig()
			if tc.GetTypeUrl() != caresTypeURL {
				return nil, fmt.Errorf("client_config.typed_dns_resolver_config.typed_config: want %s, got %q", caresTypeURL, tc.GetTypeUrl())
			}
			cares := &caresv3.CaresDnsResolverConfig{}
			if err := tc.UnmarshalTo(cares); err != nil {
				return nil, err
			}
			for i, r := range cares.GetResolvers() {
				addr, err := socketAddress(r)
				if err != nil {
					return nil, fmt.Errorf("client_config.typed_dns_resolver_config: resolvers[%d].%w", i, err)
				}
				f.Resolvers = append(f.Resolvers, addr)
			}
		}
	}
	return f, nil
}
