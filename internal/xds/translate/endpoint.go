package translate

import (
	"sort"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"skein.dev/skein/internal/model"
)

// endpoints returns one ClusterLoadAssignment per outbound cluster (every service port
// and DestinationRule subset), named like the cluster. A cluster without endpoints still
// gets an (empty) assignment, so clients waiting for it are answered. Unhealthy
// endpoints are kept, marked UNHEALTHY, so tools can show them.
func (b *builder) endpoints() []types.Resource {
	var out []*endpoint.ClusterLoadAssignment
	for _, sp := range b.ports {
		if !entryEDS(sp.svc) {
			continue // DNS and NONE ServiceEntry clusters carry no EDS (serviceentry.go)
		}
		out = append(out, b.loadAssignment(sp.cluster, sp, "", nil))
		dr := b.idx.rules[sp.host]
		if dr == nil {
			continue
		}
		for _, ss := range dr.Subsets {
			out = append(out, b.loadAssignment(OutboundClusterName(sp.port.Port, ss.Name, sp.host), sp, ss.Name, ss.Labels))
		}
	}
	return sortByName(out)
}

// loadAssignment selects the endpoints of a service port (and subset): same namespace,
// selected by the service selector and the subset labels, and carrying the port's target
// port for that endpoint's workload.
// It is the same for every proxy (built once per Index) unless the cluster's locality
// load balancing depends on where the proxy is: then once per proxy locality.
func (b *builder) loadAssignment(name string, sp servicePort, subset string, subsetLabels map[string]string) *endpoint.ClusterLoadAssignment {
	tp := b.trafficPolicyFor(sp, subset)
	return shared(b, b.idx.assignments, name+b.localityKey(tp), func() *endpoint.ClusterLoadAssignment {
		return b.newLoadAssignment(name, sp, subsetLabels, tp)
	})
}

func (b *builder) newLoadAssignment(name string, sp servicePort, subsetLabels map[string]string, tp *model.TrafficPolicy) *endpoint.ClusterLoadAssignment {
	if sp.svc.Entry != nil && len(sp.svc.Selector) == 0 {
		return b.entryAssignment(name, sp, subsetLabels)
	}
	var eps []model.Endpoint
	for _, i := range b.idx.candidates(sp.svc.Namespace, sp.svc.Selector) {
		e := b.mesh.Endpoints[i]
		if e.Workload.Namespace != sp.svc.Namespace || !model.Selects(sp.svc.Selector, e.Labels) || !hasLabels(e.Labels, subsetLabels) {
			continue
		}
		if e.Service != "" {
			// A WorkloadEntry's endpoint names its service port itself.
			if e.Service != sp.host || e.ServicePort != sp.port.Port {
				continue
			}
		} else if tp, ok := b.targetPort(sp.port, e.Workload); !ok || tp != e.TargetPort {
			continue
		}
		eps = append(eps, e)
	}
	sort.Slice(eps, func(i, j int) bool {
		a, c := eps[i], eps[j]
		if a.Address != c.Address {
			return a.Address < c.Address
		}
		if a.Port != c.Port {
			return a.Port < c.Port
		}
		if a.Workload != c.Workload {
			return a.Workload.String() < c.Workload.String()
		}
		return a.Replica < c.Replica
	})
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	if len(eps) == 0 {
		return cla
	}
	cla.Endpoints = b.localityGroups(eps, tp)
	return cla
}

// hasLabels reports whether labels contain every want label; an empty want matches all
// (unlike a Service selector).
func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func lbEndpoint(address string, port int, health *core.HealthStatus) *endpoint.LbEndpoint {
	ep := &endpoint.LbEndpoint{
		HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: socketAddress(address, port),
		}},
	}
	if health != nil {
		ep.HealthStatus = *health
	}
	return ep
}

func socketAddress(address string, port int) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       address,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}
