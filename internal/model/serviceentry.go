package model

// A ServiceEntry (networking.istio.io) adds hosts to the registry. In the model each
// of its hosts is one Service whose Host is that name and whose Entry says where the
// endpoints are and how they are found. A ServiceEntry with a workloadSelector selects
// Workloads as a Kubernetes Service does (Service.Selector), and its Endpoints are
// empty.

// Location says whether a ServiceEntry's endpoints are part of the mesh.
type Location string

const (
	// MeshExternal endpoints have no sidecar: traffic to them is never mesh mTLS.
	MeshExternal Location = "MESH_EXTERNAL"
	// MeshInternal endpoints are mesh workloads: auto-mTLS applies to the ones with
	// a sidecar.
	MeshInternal Location = "MESH_INTERNAL"
)

// Resolution says how a ServiceEntry's endpoints are found.
type Resolution string

const (
	// ResolutionNone: connections go to the address the client asked for
	// (an ORIGINAL_DST cluster), as with no ServiceEntry, but the host is known.
	ResolutionNone Resolution = "NONE"
	// ResolutionStatic: the endpoints' addresses are IPs.
	ResolutionStatic Resolution = "STATIC"
	// ResolutionDNS: endpoint addresses (or the host itself when there are none) are
	// DNS names the proxy resolves (a STRICT_DNS cluster).
	ResolutionDNS Resolution = "DNS"
	// ResolutionDNSRoundRobin: as DNS, one name at a time (a LOGICAL_DNS cluster).
	ResolutionDNSRoundRobin Resolution = "DNS_ROUND_ROBIN"
)

// ServiceEntry is the part of a Service that only a ServiceEntry defines.
type ServiceEntry struct {
	// Name is the ServiceEntry object (Service.Name is the host).
	Name       NamespacedName `json:"name"`
	Location   Location       `json:"location"`
	Resolution Resolution     `json:"resolution"`
	// Addresses are the declared VIPs or CIDRs (spec.addresses).
	Addresses []string `json:"addresses,omitempty"`
	// Endpoints are spec.endpoints (WorkloadEntry); empty with a workloadSelector.
	Endpoints []EntryEndpoint `json:"endpoints,omitempty"`
	// ExportTo lists the namespaces that see the host ("*" all, "." its own); empty
	// means all.
	ExportTo []string `json:"exportTo,omitempty"`
}

// EntryEndpoint is one WorkloadEntry of a ServiceEntry.
type EntryEndpoint struct {
	// Address is an IP (STATIC) or a DNS name (DNS resolutions).
	Address string `json:"address"`
	// Ports maps a ServiceEntry port name to this endpoint's port; a port not listed
	// uses the port's targetPort, else its number.
	Ports    map[string]int    `json:"ports,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Locality string            `json:"locality,omitempty"`
	// Weight is the endpoint's load-balancing weight; 0 means 1.
	Weight int `json:"weight,omitempty"`
}

// EntryEndpointPort is the port an endpoint serves for a ServiceEntry port.
func (e EntryEndpoint) EntryEndpointPort(p ServicePort) int {
	if n, ok := e.Ports[p.Name]; ok && n != 0 {
		return n
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Port
}

// ExportedTo reports whether a ServiceEntry host is visible to proxies of namespace ns.
func (e *ServiceEntry) ExportedTo(ns string) bool {
	if e == nil || len(e.ExportTo) == 0 {
		return true
	}
	for _, x := range e.ExportTo {
		if x == "*" || x == ns || (x == "." && ns == e.Name.Namespace) {
			return true
		}
	}
	return false
}
