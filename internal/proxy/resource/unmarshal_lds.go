package resource

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	hcmTypeURL    = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpTypeURL    = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	routerTypeURL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

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
	if err := d.filterChains(pb, l); err != nil {
		return nil, err
	}
	filters := pb.GetFilterChains()[0].GetFilters()
	switch pb.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		l.Direction = DirectionInbound
	case corev3.TrafficDirection_OUTBOUND:
		l.Direction = DirectionOutbound
	}
	tc := filters[0].GetTypedConfig()
	switch tc.GetTypeUrl() {
	case hcmTypeURL:
		hcm := &hcmv3.HttpConnectionManager{}
		if err := tc.UnmarshalTo(hcm); err != nil {
			return nil, err
		}
		l.HTTP, err = d.httpConnectionManager(hcm)
	case tcpTypeURL:
		tp := &tcpv3.TcpProxy{}
		if err := tc.UnmarshalTo(tp); err != nil {
			return nil, err
		}
		l.TCP, err = tcpProxy(tp)
	default:
		return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config: unsupported type %q", tc.GetTypeUrl())
	}
	return l, err
}

// filterChains checks the listener filters and filter chains: only the TLS inspector,
// chains matched on transport_protocol alone, each with its transport socket and the
// same single network filter.
func (d *Decoder) filterChains(pb *listenerv3.Listener, l *Listener) error {
	for i, lf := range pb.GetListenerFilters() {
		field := fmt.Sprintf("listener_filters[%d]", i)
		if err := listenerFilter(lf.GetName(), lf.GetTypedConfig(), field); err != nil {
			return err
		}
		if l.TLSInspector {
			return fmt.Errorf("%s: the TLS inspector is listed twice", field)
		}
		l.TLSInspector = true
	}
	chains := pb.GetFilterChains()
	if len(chains) == 0 {
		return fmt.Errorf("filter_chains: %w", errMissing)
	}
	seen := map[string]int{}
	for i, fc := range chains {
		field := fmt.Sprintf("filter_chains[%d]", i)
		if n := len(fc.GetFilters()); n != 1 {
			return fmt.Errorf("%s.filters: want exactly 1, got %d", field, n)
		}
		if i > 0 && !proto.Equal(fc.GetFilters()[0], chains[0].GetFilters()[0]) {
			return fmt.Errorf("%s.filters: must equal filter_chains[0].filters (skein applies one network filter per listener; chains may differ in match and transport socket only)", field)
		}
		tp := fc.GetFilterChainMatch().GetTransportProtocol()
		switch tp {
		case "", TransportTLS, TransportRawBuffer:
		default:
			return fmt.Errorf("%s.filter_chain_match.transport_protocol %q unsupported (tls or raw_buffer)", field, tp)
		}
		if first, dup := seen[tp]; dup {
			return fmt.Errorf("%s.filter_chain_match: same match as filter_chains[%d]", field, first)
		}
		seen[tp] = i
		if tp == TransportTLS {
			// Envoy adds the TLS inspector itself when a chain needs it.
			l.TLSInspector = true
		}
		tlsCtx, err := d.downstreamSocket(fc.GetTransportSocket(), field+".transport_socket")
		if err != nil {
			return err
		}
		l.Chains = append(l.Chains, FilterChain{Name: fc.GetName(), TransportProtocol: tp, TLS: tlsCtx})
	}
	return nil
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
	filters := pb.GetHttpFilters()
	if len(filters) != 1 {
		return nil, fmt.Errorf("HttpConnectionManager.http_filters: want exactly 1 (router), got %d", len(filters))
	}
	if tc := filters[0].GetTypedConfig(); tc.GetTypeUrl() != routerTypeURL {
		return nil, fmt.Errorf("HttpConnectionManager.http_filters[0].typed_config: want %s, got %q", routerTypeURL, tc.GetTypeUrl())
	} else if err := tc.UnmarshalTo(&routerv3.Router{}); err != nil {
		return nil, err
	}
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
