package resource

import (
	"errors"
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
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
	if n := len(pb.GetFilterChains()); n != 1 {
		return nil, fmt.Errorf("filter_chains: want exactly 1, got %d", n)
	}
	filters := pb.GetFilterChains()[0].GetFilters()
	if len(filters) == 0 {
		return nil, errors.New("filter_chains[0].filters: a terminal filter (http_connection_manager or tcp_proxy) is required")
	}
	l := &Listener{Name: pb.GetName(), Address: addr}
	last := len(filters) - 1
	for i, f := range filters[:last] {
		tc := f.GetTypedConfig()
		dec := networkFilterDecoders[tc.GetTypeUrl()]
		if dec == nil {
			return nil, fmt.Errorf("filter_chains[0].filters[%d].typed_config: unsupported type %q (only the last filter may be terminal)", i, tc.GetTypeUrl())
		}
		nf, err := dec(tc)
		if err != nil {
			return nil, fmt.Errorf("filter_chains[0].filters[%d] (%s): %w", i, f.GetName(), err)
		}
		nf.Name = f.GetName()
		l.Filters = append(l.Filters, nf)
	}
	tc := filters[last].GetTypedConfig()
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
		return nil, fmt.Errorf("filter_chains[0].filters[%d].typed_config: unsupported type %q", last, tc.GetTypeUrl())
	}
	return l, err
}

func (d *Decoder) httpConnectionManager(pb *hcmv3.HttpConnectionManager) (*HTTPConnectionManager, error) {
	h := &HTTPConnectionManager{StatPrefix: pb.GetStatPrefix()}
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
