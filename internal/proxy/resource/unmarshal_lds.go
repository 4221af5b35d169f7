package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	hcmTypeURL           = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpTypeURL           = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	routerTypeURL        = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	originalDstTypeURL   = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
	tlsInspectorTypeURL  = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	httpInspectorTypeURL = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
)

// defaultListenerFiltersTimeout is Envoy's default listener_filters_timeout.
const defaultListenerFiltersTimeout = 15 * time.Second

// DefaultChainName names a listener's default_filter_chain when it has no name.
const DefaultChainName = "default"

// Listener validates and unmarshals one LDS resource.
func (d *Decoder) Listener(a *anypb.Any) (Decoded[*Listener], error) {
	pb := &listenerv3.Listener{}
	if err := decode(a, ListenerType, pb); err != nil {
		return Decoded[*Listener]{}, &UnmarshalError{Type: "Listener", Err: err}
	}
	l, err := d.listener(pb)
	if err != nil {
		return Decoded[*Listener]{}, &UnmarshalError{Type: "Listener", Name: pb.GetName(), Err: err}
	}
	return Decoded[*Listener]{Name: l.Name, Resource: l, Proto: pb}, nil
}

func (d *Decoder) listener(pb *listenerv3.Listener) (*Listener, error) {
	if err := d.allow.Message(pb); err != nil {
		return nil, err
	}
	if pb.GetName() == "" {
		return nil, fmt.Errorf("name: %w", errMissing)
	}
	addr, err := socketAddress(pb.GetAddress())
	if err != nil {
		return nil, err
	}
	l := &Listener{Name: pb.GetName(), Address: addr}
	switch pb.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		l.Direction = DirectionInbound
	case corev3.TrafficDirection_OUTBOUND:
		l.Direction = DirectionOutbound
	}
	if pb.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP {
		return d.udpListener(pb, l)
	}
	if len(pb.GetFilterChains()) == 0 && pb.GetDefaultFilterChain() == nil {
		return nil, errors.New("filter_chains: at least one filter chain or a default_filter_chain is required")
	}
	seen := map[string]int{}
	names := map[string]bool{}
	for i, fc := range pb.GetFilterChains() {
		field := "filter_chains[" + strconv.Itoa(i) + "]"
		c, err := d.filterChain(fc, field)
		if err != nil {
			return nil, err
		}
		if c.Name == "" {
			c.Name = strconv.Itoa(i)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("%s.name: %q is used by another filter chain", field, c.Name)
		}
		names[c.Name] = true
		key := c.Match.key()
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s.filter_chain_match: same match as filter_chains[%d]", field, j)
		}
		seen[key] = i
		l.FilterChains = append(l.FilterChains, c)
	}
	if fc := pb.GetDefaultFilterChain(); fc != nil {
		if fc.GetFilterChainMatch() != nil {
			return nil, errors.New("default_filter_chain.filter_chain_match: not allowed on the default chain")
		}
		c, err := d.filterChain(fc, "default_filter_chain")
		if err != nil {
			return nil, err
		}
		if c.Name == "" {
			c.Name = DefaultChainName
		}
		if names[c.Name] {
			return nil, fmt.Errorf("default_filter_chain.name: %q is used by another filter chain", c.Name)
		}
		l.DefaultChain = c
	}
	if l.ListenerFilters, err = listenerFilters(pb); err != nil {
		return nil, err
	}
	if l.ListenerFilters.TLSInspector == nil {
		// Envoy adds the TLS inspector itself when a chain matches on TLS.
		for _, c := range l.Chains() {
			if c.Match.TransportProtocol == TransportTLS || len(c.Match.ServerNames) > 0 {
				l.ListenerFilters.TLSInspector = &Inspector{}
				break
			}
		}
	}
	return l, nil
}

func (d *Decoder) filterChain(fc *listenerv3.FilterChain, field string) (*FilterChain, error) {
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, fmt.Errorf("%s.filters: a terminal filter (http_connection_manager or tcp_proxy) is required", field)
	}
	c := &FilterChain{Name: fc.GetName()}
	var err error
	if c.Match, err = filterChainMatch(fc.GetFilterChainMatch()); err != nil {
		return nil, fmt.Errorf("%s.filter_chain_match: %w", field, err)
	}
	if c.TLS, err = d.downstreamSocket(fc.GetTransportSocket(), field+".transport_socket"); err != nil {
		return nil, err
	}
	last := len(filters) - 1
	for i, f := range filters[:last] {
		tc := f.GetTypedConfig()
		dec := networkFilterDecoders[tc.GetTypeUrl()]
		if dec == nil {
			return nil, fmt.Errorf("%s.filters[%d].typed_config: unsupported type %q (only the last filter may be terminal)", field, i, tc.GetTypeUrl())
		}
		nf, err := dec(tc)
		if err != nil {
			return nil, fmt.Errorf("%s.filters[%d] (%s): %w", field, i, f.GetName(), err)
		}
		nf.Name = f.GetName()
		c.Filters = append(c.Filters, nf)
	}
	tc := filters[last].GetTypedConfig()
	switch tc.GetTypeUrl() {
	case hcmTypeURL:
		hcm := &hcmv3.HttpConnectionManager{}
		if err := tc.UnmarshalTo(hcm); err != nil {
			return nil, err
		}
		c.HTTP, err = d.httpConnectionManager(hcm)
	case tcpTypeURL:
		tp := &tcpv3.TcpProxy{}
		if err := tc.UnmarshalTo(tp); err != nil {
			return nil, err
		}
		c.TCP, err = tcpProxy(tp)
	default:
		return nil, fmt.Errorf("%s.filters[%d].typed_config: unsupported type %q", field, last, tc.GetTypeUrl())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return c, nil
}

func filterChainMatch(m *listenerv3.FilterChainMatch) (FilterChainMatch, error) {
	var out FilterChainMatch
	if m == nil {
		return out, nil
	}
	if p := m.GetDestinationPort(); p != nil {
		if p.GetValue() < 1 || p.GetValue() > 65535 {
			return out, fmt.Errorf("destination_port %d out of range 1..65535", p.GetValue())
		}
		out.DestinationPort = int(p.GetValue())
	}
	for i, r := range m.GetPrefixRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return out, fmt.Errorf("prefix_ranges[%d].address_prefix: %w", i, err)
		}
		bits := a.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return out, fmt.Errorf("prefix_ranges[%d].prefix_len: %w", i, err)
		}
		out.PrefixRanges = append(out.PrefixRanges, p)
	}
	for i, n := range m.GetServerNames() {
		if n == "" || strings.Count(n, "*") > 1 || strings.Contains(n, "*") && !strings.HasPrefix(n, "*.") {
			return out, fmt.Errorf("server_names[%d]: %q: want a host name or *.suffix", i, n)
		}
		out.ServerNames = append(out.ServerNames, strings.ToLower(n))
	}
	switch tp := m.GetTransportProtocol(); tp {
	case "", TransportRawBuffer, TransportTLS:
		out.TransportProtocol = tp
	default:
		return out, fmt.Errorf("transport_protocol %q: want raw_buffer or tls", tp)
	}
	out.ApplicationProtocols = append(out.ApplicationProtocols, m.GetApplicationProtocols()...)
	return out, nil
}

// key identifies a match for the duplicate check (Envoy rejects a listener with two
// chains of the same match).
func (m FilterChainMatch) key() string {
	return fmt.Sprint(m.DestinationPort, m.PrefixRanges, m.ServerNames, m.TransportProtocol, m.ApplicationProtocols)
}

func listenerFilters(pb *listenerv3.Listener) (ListenerFilters, error) {
	var out ListenerFilters
	order := map[string]int{originalDstTypeURL: 0, tlsInspectorTypeURL: 1, httpInspectorTypeURL: 2}
	last := -1
	for i, lf := range pb.GetListenerFilters() {
		field := "listener_filters[" + strconv.Itoa(i) + "]"
		tc := lf.GetTypedConfig()
		pos, ok := order[tc.GetTypeUrl()]
		if !ok {
			return out, fmt.Errorf("%s.typed_config: unsupported type %q", field, tc.GetTypeUrl())
		}
		if pos <= last {
			return out, fmt.Errorf("%s: listener filters must be original_dst, tls_inspector, http_inspector, each at most once, in that order", field)
		}
		last = pos
		var disabled *PortPredicate
		if p := lf.GetFilterDisabled(); p != nil {
			var err error
			if disabled, err = portPredicate(p, 0); err != nil {
				return out, fmt.Errorf("%s.filter_disabled.%w", field, err)
			}
		}
		switch tc.GetTypeUrl() {
		case originalDstTypeURL:
			if err := tc.UnmarshalTo(&origdstv3.OriginalDst{}); err != nil {
				return out, err
			}
			if disabled != nil {
				return out, fmt.Errorf("%s.filter_disabled: not supported for original_dst", field)
			}
			out.OriginalDst = true
		case tlsInspectorTypeURL:
			if err := tc.UnmarshalTo(&tlsinspectorv3.TlsInspector{}); err != nil {
				return out, err
			}
			out.TLSInspector = &Inspector{Disabled: disabled}
		case httpInspectorTypeURL:
			if err := tc.UnmarshalTo(&httpinspectorv3.HttpInspector{}); err != nil {
				return out, err
			}
			out.HTTPInspector = &Inspector{Disabled: disabled}
		}
	}
	out.Timeout = defaultListenerFiltersTimeout
	if t := pb.GetListenerFiltersTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return out, fmt.Errorf("listener_filters_timeout: invalid duration %v", t)
		}
		out.Timeout = t.AsDuration()
	}
	out.ContinueOnTimeout = pb.GetContinueOnListenerFiltersTimeout()
	return out, nil
}

// portPredicate reads a filter_disabled predicate: destination_port_range rules
// combined with or_match, and_match, not_match, and any_match.
func portPredicate(p *listenerv3.ListenerFilterChainMatchPredicate, depth int) (*PortPredicate, error) {
	if depth > 8 {
		return nil, errors.New("predicate nested too deep")
	}
	set := func(ms *listenerv3.ListenerFilterChainMatchPredicate_MatchSet, name string) ([]*PortPredicate, error) {
		if len(ms.GetRules()) < 2 {
			return nil, fmt.Errorf("%s: at least 2 rules", name)
		}
		var out []*PortPredicate
		for i, r := range ms.GetRules() {
			q, err := portPredicate(r, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s.rules[%d].%w", name, i, err)
			}
			out = append(out, q)
		}
		return out, nil
	}
	var err error
	out := &PortPredicate{}
	switch {
	case p.GetOrMatch() != nil:
		out.Or, err = set(p.GetOrMatch(), "or_match")
	case p.GetAndMatch() != nil:
		out.And, err = set(p.GetAndMatch(), "and_match")
	case p.GetNotMatch() != nil:
		out.Not, err = portPredicate(p.GetNotMatch(), depth+1)
		if err != nil {
			err = fmt.Errorf("not_match.%w", err)
		}
	case p.GetDestinationPortRange() != nil:
		r := p.GetDestinationPortRange()
		if r.GetStart() < 0 || r.GetEnd() <= r.GetStart() || r.GetEnd() > 65536 {
			return nil, fmt.Errorf("destination_port_range [%d, %d) is empty or out of range", r.GetStart(), r.GetEnd())
		}
		out.Range = &PortRange{Start: int(r.GetStart()), End: int(r.GetEnd())}
	case p.GetAnyMatch():
		out.Any = true
	default:
		return nil, errors.New("rule: want one of or_match, and_match, not_match, any_match, destination_port_range")
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (d *Decoder) httpConnectionManager(pb *hcmv3.HttpConnectionManager) (*HTTPConnectionManager, error) {
	h := &HTTPConnectionManager{StatPrefix: pb.GetStatPrefix()}
	switch pb.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
		h.ForwardClientCert = XFCCSanitize
	case hcmv3.HttpConnectionManager_FORWARD_ONLY:
		h.ForwardClientCert = XFCCForwardOnly
	case hcmv3.HttpConnectionManager_APPEND_FORWARD:
		h.ForwardClientCert = XFCCAppendForward
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		h.ForwardClientCert = XFCCSanitizeSet
	case hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY:
		h.ForwardClientCert = XFCCAlwaysForwardOnly
	default:
		return nil, fmt.Errorf("HttpConnectionManager.forward_client_cert_details %v unsupported", pb.GetForwardClientCertDetails())
	}
	if cd := pb.GetSetCurrentClientCertDetails(); cd != nil {
		h.ClientCertDetails = ClientCertDetails{Subject: cd.GetSubject().GetValue(), Cert: cd.GetCert(), Chain: cd.GetChain(), DNS: cd.GetDns(), URI: cd.GetUri()}
	}
	switch pb.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		h.Codec = CodecAuto
	case hcmv3.HttpConnectionManager_HTTP1:
		h.Codec = CodecHTTP1
	case hcmv3.HttpConnectionManager_HTTP2:
		h.Codec = CodecHTTP2
	default:
		return nil, fmt.Errorf("HttpConnectionManager.codec_type %v unsupported", pb.GetCodecType())
	}
	switch {
	case pb.GetRds() != nil:
		if err := checkADS(pb.GetRds().GetConfigSource(), "HttpConnectionManager.rds.config_source"); err != nil {
			return nil, err
		}
		if pb.GetRds().GetRouteConfigName() == "" {
			return nil, fmt.Errorf("HttpConnectionManager.rds.route_config_name: %w", errMissing)
		}
		h.RDSName = pb.GetRds().GetRouteConfigName()
	case pb.GetRouteConfig() != nil:
		rc, err := d.routeConfig(pb.GetRouteConfig())
		if err != nil {
			return nil, fmt.Errorf("HttpConnectionManager.route_config: %w", err)
		}
		h.Inline = rc
	default:
		return nil, errors.New("HttpConnectionManager: one of rds or route_config is required")
	}
	filters, err := httpFilters(pb.GetHttpFilters())
	if err != nil {
		return nil, err
	}
	h.Filters = filters
	return h, nil
}

func tcpProxy(pb *tcpv3.TcpProxy) (*TCPProxy, error) {
	t := &TCPProxy{StatPrefix: pb.GetStatPrefix()}
	switch {
	case pb.GetCluster() != "":
		t.Clusters = []WeightedCluster{{Name: pb.GetCluster(), Weight: 1}}
	case pb.GetWeightedClusters() != nil:
		var total uint64
		for i, c := range pb.GetWeightedClusters().GetClusters() {
			if c.GetName() == "" {
				return nil, fmt.Errorf("TcpProxy.weighted_clusters.clusters[%d].name: %w", i, errMissing)
			}
			t.Clusters = append(t.Clusters, WeightedCluster{Name: c.GetName(), Weight: c.GetWeight()})
			total += uint64(c.GetWeight())
		}
		if total == 0 {
			return nil, errors.New("TcpProxy.weighted_clusters: total weight must be positive")
		}
	default:
		return nil, errors.New("TcpProxy: one of cluster or weighted_clusters is required")
	}
	return t, nil
}

// RDSNames lists the RDS route configurations a listener's chains reference.
func (l *Listener) RDSNames() []string {
	var out []string
	for _, c := range l.Chains() {
		if c.HTTP != nil && c.HTTP.RDSName != "" {
			out = append(out, c.HTTP.RDSName)
		}
	}
	return out
}

// Chains returns the filter chains followed by the default chain, if any.
func (l *Listener) Chains() []*FilterChain {
	out := append([]*FilterChain(nil), l.FilterChains...)
	if l.DefaultChain != nil {
		out = append(out, l.DefaultChain)
	}
	return out
}
