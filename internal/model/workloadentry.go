package model

import "strings"

// WorkloadEntry is Istio's WorkloadEntry (networking.istio.io): a workload that runs
// outside skein's runtime (a VM, a process started by hand, a server under test) at a
// fixed address. Services and ServiceEntries with a selector select it by its labels
// in its namespace, as they select Workloads. It is how `skein control`, which runs no
// workloads, learns where the endpoints are.
type WorkloadEntry struct {
	NamespacedName
	// Address is the workload's IP.
	Address string `json:"address"`
	// Ports maps a service port name (or a Service's named targetPort) to the port the
	// workload serves it on; a port not listed uses the service port's targetPort, else
	// its number (Istio's rule).
	Ports  map[string]int    `json:"ports,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Locality is Istio's "region/zone/subzone"; empty when unknown.
	Locality string `json:"locality,omitempty"`
	Source   Source `json:"source"`
}

// LabelTLSMode is Istio's label saying an endpoint terminates mesh mTLS (value "istio").
const LabelTLSMode = "security.istio.io/tlsMode"

// WorkloadEntryEndpoints returns the endpoints the mesh's WorkloadEntries give the
// services that select them: one per (entry, selecting service, service port), bound
// to that service port (Endpoint.Service) since the port comes from the entry, not
// from a container port.
func WorkloadEntryEndpoints(m *Mesh) []Endpoint {
	var out []Endpoint
	for _, we := range m.WorkloadEntries {
		labels := we.endpointLabels()
		for _, svc := range m.Services {
			if svc.Namespace != we.Namespace || !Selects(svc.Selector, we.Labels) {
				continue
			}
			if svc.Entry != nil && len(svc.Entry.Endpoints) > 0 {
				continue // a ServiceEntry's own endpoints (it has no selector then anyway)
			}
			for _, p := range svc.Ports {
				port, ok := we.portFor(p)
				if !ok {
					continue
				}
				out = append(out, Endpoint{
					Workload:    we.NamespacedName,
					Labels:      labels,
					Address:     we.Address,
					Port:        port,
					TargetPort:  port,
					Healthy:     true, // declared, not probed: outlier detection finds dead ones
					Sidecar:     we.Labels[LabelTLSMode] == "istio",
					Service:     svc.Hostname(m.Suffix()),
					ServicePort: p.Port,
				})
			}
		}
	}
	return out
}

// portFor is the port the entry serves service port p on.
func (we *WorkloadEntry) portFor(p ServicePort) (int, bool) {
	if n, ok := we.Ports[p.Name]; ok && p.Name != "" {
		return n, true
	}
	switch {
	case p.TargetPort != 0:
		return p.TargetPort, true
	case p.TargetPortName != "":
		n, ok := we.Ports[p.TargetPortName]
		return n, ok
	default:
		return p.Port, true
	}
}

// endpointLabels are the entry's labels plus its locality as topology labels, which
// is where the translator reads an endpoint's locality from.
func (we *WorkloadEntry) endpointLabels() map[string]string {
	if we.Locality == "" {
		return we.Labels
	}
	out := make(map[string]string, len(we.Labels)+3)
	for k, v := range we.Labels {
		out[k] = v
	}
	parts := strings.SplitN(we.Locality, "/", 3)
	for i, k := range []string{LabelRegion, LabelZone, LabelSubzone} {
		if i < len(parts) && parts[i] != "" {
			out[k] = parts[i]
		}
	}
	return out
}
