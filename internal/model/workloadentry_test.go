package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWorkloadEntryEndpoints: each selecting service port gets the entry's port for
// it, by Istio's rule (ports map by port name, then targetPort, then the port), and
// the endpoint is bound to that service port.
func TestWorkloadEntryEndpoints(t *testing.T) {
	m := &Mesh{
		Services: []*Service{
			{NamespacedName: NamespacedName{Namespace: "default", Name: "catalog"}, Selector: map[string]string{"app": "catalog"},
				Ports: []ServicePort{
					{Name: "grpc", Port: 9090, TargetPortName: "grpc-port"},
					{Name: "http", Port: 8080, TargetPort: 18080},
					{Name: "admin", Port: 15000},
					{Name: "named", Port: 7000, TargetPortName: "missing"},
				}},
			{NamespacedName: NamespacedName{Namespace: "other", Name: "catalog"}, Selector: map[string]string{"app": "catalog"},
				Ports: []ServicePort{{Name: "grpc", Port: 9090}}},
			{NamespacedName: NamespacedName{Namespace: "default", Name: "vm.example.com"}, Host: "vm.example.com",
				Selector: map[string]string{"app": "catalog"}, Entry: &ServiceEntry{Resolution: ResolutionStatic},
				Ports: []ServicePort{{Name: "http", Port: 80}}},
		},
		WorkloadEntries: []*WorkloadEntry{{
			NamespacedName: NamespacedName{Namespace: "default", Name: "catalog-vm"},
			Address:        "10.0.0.7",
			Ports:          map[string]int{"grpc-port": 41001, "http": 41080},
			Labels:         map[string]string{"app": "catalog", LabelTLSMode: "istio"},
			Locality:       "eu/a",
		}},
	}
	labels := map[string]string{"app": "catalog", LabelTLSMode: "istio", LabelRegion: "eu", LabelZone: "a"}
	ep := func(port int, svc string, sport int) Endpoint {
		return Endpoint{Workload: NamespacedName{Namespace: "default", Name: "catalog-vm"}, Labels: labels, Address: "10.0.0.7",
			Port: port, TargetPort: port, Healthy: true, Sidecar: true, Service: svc, ServicePort: sport}
	}
	const fqdn = "catalog.default.svc.cluster.local"
	want := []Endpoint{
		ep(41001, fqdn, 9090),  // named targetPort looked up in the entry's ports
		ep(41080, fqdn, 8080),  // the ports map by service port name wins over targetPort
		ep(15000, fqdn, 15000), // neither: the port itself
		ep(41080, "vm.example.com", 80),
	}
	if diff := cmp.Diff(want, WorkloadEntryEndpoints(m)); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
}
