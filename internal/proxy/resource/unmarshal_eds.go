package resource

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Endpoints validates and unmarshals one EDS resource.
func (d *Decoder) Endpoints(a *anypb.Any) (Decoded[*Endpoints], error) {
	pb := &endpointv3.ClusterLoadAssignment{}
	if err := decode(a, EndpointType, pb); err != nil {
		return Decoded[*Endpoints]{}, &UnmarshalError{Type: "ClusterLoadAssignment", Err: err}
	}
	if err := d.allow.Message(pb); err != nil {
		return Decoded[*Endpoints]{}, &UnmarshalError{Type: "ClusterLoadAssignment", Name: pb.GetClusterName(), Err: err}
	}
	if pb.GetClusterName() == "" {
		return Decoded[*Endpoints]{}, &UnmarshalError{Type: "ClusterLoadAssignment", Err: fmt.Errorf("cluster_name: %w", errMissing)}
	}
	eps, err := endpoints(pb)
	if err != nil {
		return Decoded[*Endpoints]{}, &UnmarshalError{Type: "ClusterLoadAssignment", Name: pb.GetClusterName(), Err: err}
	}
	return Decoded[*Endpoints]{Name: eps.ClusterName, Resource: eps, Proto: pb}, nil
}

func endpoints(pb *endpointv3.ClusterLoadAssignment) (*Endpoints, error) {
	eps := &Endpoints{ClusterName: pb.GetClusterName()}
	for i, loc := range pb.GetEndpoints() {
		var locality string
		if l := loc.GetLocality(); l != nil {
			locality = l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
		}
		var localityWeight uint32
		if w := loc.GetLoadBalancingWeight(); w != nil {
			if w.GetValue() == 0 {
				return nil, fmt.Errorf("endpoints[%d].load_balancing_weight must be positive", i)
			}
			localityWeight = w.GetValue()
		}
		for j, lbe := range loc.GetLbEndpoints() {
			addr, err := socketAddress(lbe.GetEndpoint().GetAddress())
			if err != nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint: %w", i, j, err)
			}
			weight := uint32(1)
			if w := lbe.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].load_balancing_weight must be positive", i, j)
				}
				weight = w.GetValue()
			}
			var socketMatch map[string]string
			for key, md := range lbe.GetMetadata().GetFilterMetadata() {
				if key != transportSocketMatchKey {
					return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].metadata.filter_metadata[%q] unsupported (only %s)", i, j, key, transportSocketMatchKey)
				}
				if socketMatch, err = stringStruct(md, fmt.Sprintf("endpoints[%d].lb_endpoints[%d].metadata.filter_metadata[%q]", i, j, key)); err != nil {
					return nil, err
				}
			}
			hs := lbe.GetHealthStatus()
			eps.Endpoints = append(eps.Endpoints, Endpoint{
				Address: addr,
				// Envoy routes to UNKNOWN as well as HEALTHY hosts.
				Healthy:        hs == corev3.HealthStatus_UNKNOWN || hs == corev3.HealthStatus_HEALTHY,
				Weight:         weight,
				SocketMatch:    socketMatch,
				Priority:       loc.GetPriority(),
				Locality:       locality,
				LocalityWeight: localityWeight,
			})
		}
	}
	return eps, nil
}

// transportSocketMatchKey is the filter_metadata key of transport socket matching.
const transportSocketMatchKey = "envoy.transport_socket_match"

// stringStruct reads a Struct whose values are all strings.
func stringStruct(s *structpb.Struct, field string) (map[string]string, error) {
	if len(s.GetFields()) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(s.GetFields()))
	for k, v := range s.GetFields() {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, fmt.Errorf("%s[%q]: only string values are supported", field, k)
		}
		out[k] = sv.StringValue
	}
	return out, nil
}
