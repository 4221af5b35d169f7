package translate

import (
	"fmt"
	"testing"

	"skein.dev/skein/internal/model"
)

// scaleMesh: services HTTP services in 20 namespaces, endpoints spread over them, and
// optionally one Sidecar per namespace importing that namespace ("./*").
func scaleMesh(services, endpoints int, namespaceSidecars bool) *model.Mesh {
	m := &model.Mesh{Generation: 1}
	ns := func(i int) string { return fmt.Sprintf("ns-%02d", i%20) }
	for i := range services {
		nn := model.NamespacedName{Namespace: ns(i), Name: fmt.Sprintf("svc-%05d", i)}
		labels := map[string]string{"app": nn.Name}
		m.Services = append(m.Services, &model.Service{NamespacedName: nn, Selector: labels,
			Ports: []model.ServicePort{{Name: "http", Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP}}})
		m.Workloads = append(m.Workloads, &model.Workload{NamespacedName: nn, Labels: labels, Ports: []model.ContainerPort{{Name: "http", ContainerPort: 8080}}})
	}
	for e := range endpoints {
		i := e % services
		m.Endpoints = append(m.Endpoints, model.Endpoint{Workload: model.NamespacedName{Namespace: ns(i), Name: fmt.Sprintf("svc-%05d", i)},
			Replica: e / services, Labels: map[string]string{"app": fmt.Sprintf("svc-%05d", i)},
			Address: fmt.Sprintf("10.%d.%d.%d", (e>>16)&255, (e>>8)&255, e&255), Port: 15006, TargetPort: 8080, Healthy: true})
	}
	if namespaceSidecars {
		for n := range 20 {
			m.Sidecars = append(m.Sidecars, &model.Sidecar{NamespacedName: model.NamespacedName{Namespace: ns(n), Name: "default"}, EgressHosts: []string{"./*"}})
		}
	}
	return m
}

func scaleProxy(i int) *model.Proxy {
	name := fmt.Sprintf("svc-%05d", i)
	return &model.Proxy{ID: name + "-0", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: fmt.Sprintf("ns-%02d", i%20), Name: name},
		Labels: map[string]string{"app": name}, Capture: model.CaptureNone, IP: "127.0.0.1", InboundPorts: map[int]int{8080: 20000}, OutboundHTTPPort: 15001}
}

// BenchmarkForProxyShared: one proxy's translation with a warm shared Index (what each
// node costs in a push round), by mesh size and scope.
func BenchmarkForProxyShared(b *testing.B) {
	for _, bc := range []struct {
		services int
		scoped   bool
	}{{1000, false}, {1000, true}, {10000, true}} {
		name := fmt.Sprintf("%d_services/mesh", bc.services)
		if bc.scoped {
			name = fmt.Sprintf("%d_services/namespace_sidecar", bc.services)
		}
		b.Run(name, func(b *testing.B) {
			idx := NewIndex(scaleMesh(bc.services, 50000, bc.scoped))
			for i := range 20 { // warm the shared resources of every namespace
				if _, err := idx.ForProxy(scaleProxy(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := idx.ForProxy(scaleProxy(i % 20)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewIndex: preparing a mesh of 10,000 services and 50,000 endpoints.
func BenchmarkNewIndex(b *testing.B) {
	m := scaleMesh(10000, 50000, false)
	b.ReportAllocs()
	for b.Loop() {
		NewIndex(m)
	}
}
