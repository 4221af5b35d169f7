package main

import (
	"fmt"
	"strconv"
	"time"

	"skein.dev/skein/internal/model"
)

// scenario is one synthetic registry and how proxies are scoped.
type scenario struct {
	Services   int    `json:"services"`
	Endpoints  int    `json:"endpoints"`
	Namespaces int    `json:"namespaces"`
	Clients    int    `json:"clients"`
	Deps       int    `json:"deps"`  // services each client depends on (declared scope)
	Scope      string `json:"scope"` // none | namespace | declared | inferred
}

const suffix = model.DefaultDomainSuffix

func svcName(i int) string { return fmt.Sprintf("svc-%05d", i) }

func (sc scenario) namespace(i int) string { return fmt.Sprintf("ns-%02d", i%sc.Namespaces) }

func (sc scenario) host(i int) string { return svcName(i) + "." + sc.namespace(i) + "." + suffix }

// deps: the services client j calls: svc 0 (a service everyone uses, whose endpoint the
// config change touches) and the next Deps-1 services after its own.
func (sc scenario) deps(j int) []int {
	out := []int{0}
	for k := 1; k < sc.Deps; k++ {
		out = append(out, (j+k)%sc.Services)
	}
	return out
}

// mesh builds the registry: one HTTP service per workload, endpoints spread evenly over
// the services (10.x.y.z addresses: config only, no traffic is ever sent), and the
// Sidecars of the scope. flip makes endpoint 0 (of svc 0) unhealthy: the config change.
func (sc scenario) mesh(gen int64, flip bool) *model.Mesh {
	m := &model.Mesh{Generation: gen}
	for i := 0; i < sc.Services; i++ {
		nn := model.NamespacedName{Namespace: sc.namespace(i), Name: svcName(i)}
		labels := map[string]string{"app": svcName(i)}
		m.Services = append(m.Services, &model.Service{NamespacedName: nn, Selector: labels,
			Ports: []model.ServicePort{{Name: "http", Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP}}})
		m.Workloads = append(m.Workloads, &model.Workload{NamespacedName: nn, Labels: labels, ServiceAccount: svcName(i),
			Replicas: max(1, sc.Endpoints/sc.Services), Ports: []model.ContainerPort{{Name: "http", ContainerPort: 8080}}})
	}
	for e := 0; e < sc.Endpoints; e++ {
		i := e % sc.Services
		m.Endpoints = append(m.Endpoints, model.Endpoint{
			Workload: model.NamespacedName{Namespace: sc.namespace(i), Name: svcName(i)},
			Replica:  e / sc.Services, Labels: map[string]string{"app": svcName(i)},
			Address: fmt.Sprintf("10.%d.%d.%d", (e>>16)&255, (e>>8)&255, e&255), Port: 15006, TargetPort: 8080,
			Healthy: !(flip && e == 0),
		})
	}
	switch sc.Scope {
	case "namespace":
		for n := 0; n < sc.Namespaces; n++ {
			m.Sidecars = append(m.Sidecars, &model.Sidecar{
				NamespacedName: model.NamespacedName{Namespace: fmt.Sprintf("ns-%02d", n), Name: "default"},
				EgressHosts:    []string{"./*", sc.namespace(0) + "/" + sc.host(0)},
			})
		}
	case "declared":
		for j := 0; j < sc.Clients; j++ {
			s := &model.Sidecar{NamespacedName: model.NamespacedName{Namespace: sc.namespace(j), Name: svcName(j)},
				WorkloadSelector: map[string]string{"app": svcName(j)}}
			for _, d := range sc.deps(j) {
				s.EgressHosts = append(s.EgressHosts, "*/"+sc.host(d))
			}
			m.Sidecars = append(m.Sidecars, s)
		}
	case "inferred":
		// Nothing declared: each client reports its dependencies (scope service), as
		// a proxy does for the hosts it is asked for.
		m.Sidecars = append(m.Sidecars, &model.Sidecar{
			NamespacedName: model.NamespacedName{Namespace: model.RootNamespace, Name: "default"},
			EgressHosts:    []string{"~/*"}, InferFromTraffic: true, InferredTTL: time.Hour,
		})
	}
	return m
}

// proxy is client j: the sidecar of service j's replica 0, with an inbound port and the
// explicit HTTP proxy port (so it gets the outbound_http_proxy route table).
func (sc scenario) proxy(j int) *model.Proxy {
	return &model.Proxy{
		ID: svcName(j) + "-0." + sc.namespace(j), Role: model.RoleSidecar,
		Workload: model.NamespacedName{Namespace: sc.namespace(j), Name: svcName(j)},
		Labels:   map[string]string{"app": svcName(j)}, ServiceAccount: svcName(j),
		Capture: model.CaptureNone, IP: "127.0.0.1",
		InboundPorts: map[int]int{8080: 20000 + j%40000}, AppPorts: map[int]int{8080: 8080},
		OutboundHTTPPort: 15001,
	}
}

func (sc scenario) String() string {
	return strconv.Itoa(sc.Services) + " services, " + sc.Scope
}
