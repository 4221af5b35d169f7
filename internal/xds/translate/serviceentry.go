package translate

import (
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// ServiceEntry hosts (model/serviceentry.go) become services like any other; what
// differs is where their endpoints come from, which is the cluster's discovery type,
// as Istio does:
//   - STATIC: EDS, the load assignment built from the entry's endpoints;
//   - DNS: STRICT_DNS with an inline load_assignment of the endpoints' names (the
//     host itself when there are none), resolved by the proxy;
//   - DNS_ROUND_ROBIN: LOGICAL_DNS, the same with one name;
//   - NONE: ORIGINAL_DST (CLUSTER_PROVIDED): the connection goes where the client sent
//     it, the host is only known to the registry (allowed under REGISTRY_ONLY);
//   - a workloadSelector: EDS over the selected workloads, as a Kubernetes Service.

// entryClusterVariant distinguishes, in the Index's cluster cache, the clusters that
// differ by capture mode (NONE resolution).
func (b *builder) entryClusterVariant(sp servicePort) string {
	if sp.svc.Entry != nil && entryDiscovery(sp.svc) == cluster.Cluster_ORIGINAL_DST && !b.capture() {
		return "|dns"
	}
	return ""
}

// entryDiscovery is the cluster discovery type for a service port; EDS for services
// that are not ServiceEntries.
func entryDiscovery(svc *model.Service) cluster.Cluster_DiscoveryType {
	e := svc.Entry
	if e == nil || len(svc.Selector) > 0 {
		return cluster.Cluster_EDS
	}
	switch e.Resolution {
	case model.ResolutionDNS:
		return cluster.Cluster_STRICT_DNS
	case model.ResolutionDNSRoundRobin:
		return cluster.Cluster_LOGICAL_DNS
	case model.ResolutionNone:
		return cluster.Cluster_ORIGINAL_DST
	}
	return cluster.Cluster_EDS
}

// entryCluster turns an EDS outbound cluster into the ServiceEntry's discovery type.
func (b *builder) entryCluster(c *cluster.Cluster, sp servicePort, subsetLabels map[string]string) {
	t := entryDiscovery(sp.svc)
	if t == cluster.Cluster_ORIGINAL_DST && !b.capture() {
		// Without capture there is no original destination (the connection came to
		// the proxy's own port, a loop): the host the app named is resolved instead.
		t = cluster.Cluster_LOGICAL_DNS
	}
	switch t {
	case cluster.Cluster_EDS:
	case cluster.Cluster_ORIGINAL_DST:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: t}
		c.EdsClusterConfig = nil
		c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
	default:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: t}
		c.EdsClusterConfig = nil
		c.LoadAssignment = b.entryAssignment(c.Name, sp, subsetLabels)
	}
}

// entryEDS reports whether a service port's clusters take an EDS load assignment.
func entryEDS(svc *model.Service) bool { return entryDiscovery(svc) == cluster.Cluster_EDS }

// entryAssignment lists a ServiceEntry's endpoints for one port (and subset): address,
// the endpoint's port for that port name, weight, locality. For DNS resolution without
// endpoints the host itself is the one endpoint.
func (b *builder) entryAssignment(name string, sp servicePort, subsetLabels map[string]string) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	eps := sp.svc.Entry.Endpoints
	if len(eps) == 0 && !entryEDS(sp.svc) {
		eps = []model.EntryEndpoint{{Address: sp.host}}
	}
	byLocality := map[string]*endpoint.LocalityLbEndpoints{}
	for _, e := range eps {
		if !hasLabels(e.Labels, subsetLabels) {
			continue
		}
		group := byLocality[e.Locality]
		if group == nil {
			group = &endpoint.LocalityLbEndpoints{Locality: entryLocality(e.Locality)}
			byLocality[e.Locality] = group
		}
		ep := lbEndpoint(e.Address, e.EntryEndpointPort(sp.port), nil)
		if e.Weight > 0 {
			ep.LoadBalancingWeight = wrapperspb.UInt32(uint32(e.Weight))
		}
		if sp.svc.Entry.Location == model.MeshInternal && b.secure() {
			// MESH_INTERNAL endpoints are mesh workloads: auto-mTLS applies.
			ep.Metadata = b.endpointMetadata(model.Endpoint{Sidecar: true, TargetPort: e.EntryEndpointPort(sp.port)})
		}
		group.LbEndpoints = append(group.LbEndpoints, ep)
	}
	for _, k := range model.SortedKeys(byLocality) {
		cla.Endpoints = append(cla.Endpoints, byLocality[k])
	}
	return cla
}

// entryLocality parses Istio's "region/zone/subzone"; nil when empty (the proxy
// accepts no locality field yet for sidecar endpoints).
func entryLocality(s string) *core.Locality {
	if s == "" {
		return nil
	}
	parts := append(strings.SplitN(s, "/", 3), "", "")
	return &core.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

// entryDomains are a ServiceEntry host's Host header forms: the host, with the port,
// and without it for port 80 or the host's only HTTP port (no short names: the host is
// used as declared).
func entryDomains(sp servicePort) []string {
	port := ":" + strconv.Itoa(sp.port.Port)
	if sp.port.Port == 80 || httpPortCount(sp.svc) == 1 {
		return []string{sp.host, sp.host + port}
	}
	return []string{sp.host + port}
}

// exported drops service ports of ServiceEntries not exported to the proxy's namespace.
func (b *builder) exported(ports []servicePort) []servicePort {
	if b.proxy == nil {
		return ports
	}
	var out []servicePort
	for _, sp := range ports {
		if sp.svc.Entry.ExportedTo(b.proxy.Workload.Namespace) {
			out = append(out, sp)
		}
	}
	return out
}

// entryDNSNames are the names a captured pod resolves to a ServiceEntry's VIP: the host.
func entryDNSNames(s *model.Service) []string { return []string{s.Host} }

// entryPortChain is the first TCP port of a resolution NONE ServiceEntry without
// addresses among sps: its connections have no VIP to match, so it gets the port's
// address-less chain (Istio's 0.0.0.0_<port> listener) and its ORIGINAL_DST cluster
// sends them where they were going. Nil when there is none.
func entryPortChain(sps []servicePort) *servicePort {
	for _, sp := range sps {
		if sp.svc.Entry != nil && sp.svc.VIP == "" && sp.svc.Entry.Resolution == model.ResolutionNone {
			return &sp
		}
	}
	return nil
}
