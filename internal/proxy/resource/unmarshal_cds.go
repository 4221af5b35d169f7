package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// defaultConnectTimeout is Envoy's default for Cluster.connect_timeout.
const defaultConnectTimeout = 5 * time.Second

// Cluster validates and unmarshals one CDS resource.
func (d *Decoder) Cluster(a *anypb.Any) (Decoded[*Cluster], error) {
	pb := &clusterv3.Cluster{}
	if err := decode(a, ClusterType, pb); err != nil {
		return Decoded[*Cluster]{}, &UnmarshalError{Type: "Cluster", Err: err}
	}
	c, err := d.cluster(pb)
	if err != nil {
		return Decoded[*Cluster]{}, &UnmarshalError{Type: "Cluster", Name: pb.GetName(), Err: err}
	}
	return Decoded[*Cluster]{Name: c.Name, Resource: c, Proto: pb}, nil
}

func (d *Decoder) cluster(pb *clusterv3.Cluster) (*Cluster, error) {
	if err := d.allow.Message(pb); err != nil {
		return nil, err
	}
	if pb.GetName() == "" {
		return nil, fmt.Errorf("name: %w", errMissing)
	}
	c := &Cluster{Name: pb.GetName(), ConnectTimeout: defaultConnectTimeout}
	switch pb.GetType() {
	case clusterv3.Cluster_EDS:
		c.Kind = ClusterEDS
		if err := checkADS(pb.GetEdsClusterConfig().GetEdsConfig(), "eds_cluster_config.eds_config"); err != nil {
			return nil, err
		}
		if pb.GetLoadAssignment() != nil {
			return nil, errors.New("load_assignment is only supported for STATIC clusters")
		}
	case clusterv3.Cluster_STATIC:
		c.Kind = ClusterStatic
		if pb.GetEdsClusterConfig() != nil {
			return nil, errors.New("eds_cluster_config is only supported for EDS clusters")
		}
		// Without load_assignment a STATIC cluster has no hosts (Istio's BlackHoleCluster).
		c.Static = &Endpoints{ClusterName: c.Name}
		if pb.GetLoadAssignment() != nil {
			eps, err := endpoints(pb.GetLoadAssignment())
			if err != nil {
				return nil, fmt.Errorf("load_assignment: %w", err)
			}
			c.Static = eps
		}
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		// ServiceEntry DNS resolution: the load_assignment names hosts by DNS name.
		// The proxy resolves a name when it connects (the system resolver, with its
		// cache), so STRICT_DNS spreads over the listed names, not over every address
		// one name resolves to, as Envoy would; LOGICAL_DNS is the same with one name.
		c.Kind = ClusterStatic
		c.DNS = true
		if pb.GetEdsClusterConfig() != nil {
			return nil, errors.New("eds_cluster_config is only supported for EDS clusters")
		}
		if pb.GetLoadAssignment() == nil {
			return nil, fmt.Errorf("load_assignment: %w (a %v cluster needs the names to resolve)", errMissing, pb.GetType())
		}
		eps, err := endpoints(pb.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %w", err)
		}
		if pb.GetType() == clusterv3.Cluster_LOGICAL_DNS && len(eps.Endpoints) != 1 {
			return nil, fmt.Errorf("load_assignment: a LOGICAL_DNS cluster takes exactly one endpoint, got %d", len(eps.Endpoints))
		}
		c.Static = eps
	case clusterv3.Cluster_ORIGINAL_DST:
		c.Kind = ClusterOriginalDst
		if pb.GetEdsClusterConfig() != nil || pb.GetLoadAssignment() != nil {
			return nil, errors.New("an ORIGINAL_DST cluster takes neither eds_cluster_config nor load_assignment")
		}
		if pb.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
			return nil, fmt.Errorf("lb_policy %v: an ORIGINAL_DST cluster requires CLUSTER_PROVIDED", pb.GetLbPolicy())
		}
	default:
		return nil, fmt.Errorf("type %v unsupported", pb.GetType())
	}
	switch pb.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		c.LB = LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		c.LB = LBLeastRequest
	case clusterv3.Cluster_RANDOM:
		c.LB = LBRandom
	case clusterv3.Cluster_RING_HASH:
		c.LB = LBRingHash
	case clusterv3.Cluster_MAGLEV:
		c.LB = LBMaglev
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if c.Kind != ClusterOriginalDst {
			return nil, errors.New("lb_policy CLUSTER_PROVIDED is only supported for ORIGINAL_DST clusters")
		}
		c.LB = LBClusterProvided
	default:
		return nil, fmt.Errorf("lb_policy %v unsupported", pb.GetLbPolicy())
	}
	if err := clusterPolicy(pb, c); err != nil {
		return nil, err
	}
	if t := pb.GetConnectTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() <= 0 {
			return nil, fmt.Errorf("connect_timeout must be positive, got %v", t)
		}
		c.ConnectTimeout = t.AsDuration()
	}
	var err error
	if c.TLS, err = d.upstreamSocket(pb.GetTransportSocket(), "transport_socket"); err != nil {
		return nil, err
	}
	for i, m := range pb.GetTransportSocketMatches() {
		field := fmt.Sprintf("transport_socket_matches[%d]", i)
		match, err := stringStruct(m.GetMatch(), field+".match")
		if err != nil {
			return nil, err
		}
		if m.GetTransportSocket() == nil {
			return nil, fmt.Errorf("%s.transport_socket: %w", field, errMissing)
		}
		t, err := d.upstreamSocket(m.GetTransportSocket(), field+".transport_socket")
		if err != nil {
			return nil, err
		}
		c.TLSMatches = append(c.TLSMatches, TransportSocketMatch{Name: m.GetName(), Match: match, TLS: t})
	}
	if bc := pb.GetUpstreamBindConfig(); bc != nil {
		sa := bc.GetSourceAddress()
		a, err := netip.ParseAddr(sa.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("upstream_bind_config.source_address.address: %w", err)
		}
		if sa.GetPortValue() != 0 {
			return nil, errors.New("upstream_bind_config.source_address.port_value: only 0 (any port) is supported")
		}
		c.BindAddress = a.String()
	}
	for key, opts := range pb.GetTypedExtensionProtocolOptions() {
		if key != httpProtocolOptionsKey {
			return nil, fmt.Errorf("typed_extension_protocol_options[%q] unsupported", key)
		}
		hpo := &httpv3.HttpProtocolOptions{}
		if err := opts.UnmarshalTo(hpo); err != nil {
			return nil, fmt.Errorf("typed_extension_protocol_options[%q]: %w", key, err)
		}
		if common := hpo.GetCommonHttpProtocolOptions(); common != nil {
			if t := common.GetIdleTimeout(); t != nil {
				if c.Policy.IdleTimeout, err = positiveDuration(t, "common_http_protocol_options.idle_timeout"); err != nil {
					return nil, err
				}
			}
			c.Policy.MaxRequestsPerConnection = common.GetMaxRequestsPerConnection().GetValue()
		}
		explicit := hpo.GetExplicitHttpConfig()
		switch {
		case hpo.GetUseDownstreamProtocolConfig() != nil:
			// Istio's inbound clusters: speak to the app what the caller spoke.
			c.UseDownstreamProtocol = true
		case explicit.GetHttp2ProtocolOptions() != nil:
			c.HTTP2 = true
		case explicit.GetHttpProtocolOptions() != nil:
			c.HTTP2 = false
		default:
			return nil, fmt.Errorf("typed_extension_protocol_options[%q].explicit_http_config: %w", key, errMissing)
		}
	}
	return c, nil
}
