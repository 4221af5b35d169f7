package translate

import (
	"sort"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"skein.dev/skein/internal/model"
)

// Index is one mesh prepared for translating many proxies: lookups by host instead of
// scans, endpoints indexed by namespace and label, and the resources that do not depend
// on the proxy (outbound clusters, load assignments, virtual hosts per namespace)
// built once and shared by every proxy's snapshot. Shared resources are never mutated
// after they are built, so sharing them between snapshots (and go-control-plane's
// concurrent marshalling) is safe.
//
// Translating with an Index gives exactly what ForProxy gives (ForProxy builds a
// throwaway Index); the control plane keeps one per mesh generation, which turns a push
// to N proxies from N full translations into one plus N small ones (docs/BENCHMARKS.md,
// control-plane scale).
type Index struct {
	mesh      *model.Mesh
	suffix    string
	ports     []servicePort // every service port, sorted by host then port
	portIndex map[string]int
	hostPorts map[string][]int // host → indexes into ports
	nsHosts   map[string][]string
	nsPorts   map[string][]int // namespace → indexes into ports
	workloads map[model.NamespacedName]*model.Workload
	services  map[string]*model.Service
	rules     map[string]*model.DestinationRule
	vs        map[string]*model.VirtualService
	// postings: namespace → "key=value" → indexes into mesh.Endpoints.
	postings map[string]map[string][]int

	mu          sync.Mutex // guards the caches below
	clusters    map[string]*cluster.Cluster
	assignments map[string]*endpoint.ClusterLoadAssignment
	vhosts      map[string]*route.VirtualHost
	// routeConfigs: route configurations by name and virtual host identities, so
	// proxies with the same scope share one (and the server marshals it once).
	routeConfigs map[string]*route.RouteConfiguration
}

// NewIndex prepares a mesh for translation. The mesh must not change afterwards (no
// Mesh ever does).
func NewIndex(mesh *model.Mesh) *Index {
	if mesh == nil {
		mesh = &model.Mesh{}
	}
	x := &Index{
		mesh:         mesh,
		suffix:       mesh.Suffix(),
		portIndex:    map[string]int{},
		hostPorts:    map[string][]int{},
		nsHosts:      map[string][]string{},
		nsPorts:      map[string][]int{},
		workloads:    make(map[model.NamespacedName]*model.Workload, len(mesh.Workloads)),
		services:     make(map[string]*model.Service, len(mesh.Services)),
		rules:        make(map[string]*model.DestinationRule, len(mesh.DestinationRules)),
		vs:           map[string]*model.VirtualService{},
		postings:     map[string]map[string][]int{},
		clusters:     map[string]*cluster.Cluster{},
		assignments:  map[string]*endpoint.ClusterLoadAssignment{},
		vhosts:       map[string]*route.VirtualHost{},
		routeConfigs: map[string]*route.RouteConfiguration{},
	}
	for _, w := range mesh.Workloads {
		x.workloads[w.NamespacedName] = w
	}
	for _, s := range mesh.Services {
		host := s.Hostname(x.suffix)
		if _, dup := x.services[host]; !dup {
			x.services[host] = s // first wins, as Mesh.ServiceByHost
			x.nsHosts[s.Namespace] = append(x.nsHosts[s.Namespace], host)
		}
		for _, p := range s.Ports {
			x.ports = append(x.ports, servicePort{svc: s, host: host, port: p,
				key: model.UpstreamKey(host, p.Port), cluster: OutboundClusterName(p.Port, "", host)})
		}
	}
	sort.Slice(x.ports, func(i, j int) bool {
		if x.ports[i].host != x.ports[j].host {
			return x.ports[i].host < x.ports[j].host
		}
		return x.ports[i].port.Port < x.ports[j].port.Port
	})
	for i, sp := range x.ports {
		if _, dup := x.portIndex[sp.key]; !dup {
			x.portIndex[sp.key] = i
		}
		x.hostPorts[sp.host] = append(x.hostPorts[sp.host], i)
		x.nsPorts[sp.svc.Namespace] = append(x.nsPorts[sp.svc.Namespace], i)
	}
	for _, dr := range mesh.DestinationRules {
		if _, dup := x.rules[dr.Host]; !dup {
			x.rules[dr.Host] = dr // the oldest wins, as Mesh.DestinationRuleFor
		}
	}
	for _, v := range mesh.VirtualServices {
		if !appliesToMesh(v) {
			continue
		}
		for _, h := range v.Hosts {
			if _, dup := x.vs[h]; !dup {
				x.vs[h] = v
			}
		}
	}
	for i, e := range mesh.Endpoints {
		byLabel := x.postings[e.Workload.Namespace]
		if byLabel == nil {
			byLabel = map[string][]int{}
			x.postings[e.Workload.Namespace] = byLabel
		}
		for k, v := range e.Labels {
			byLabel[k+"="+v] = append(byLabel[k+"="+v], i)
		}
	}
	return x
}

// ForProxy builds one proxy's resources from the index (see the package ForProxy).
func (x *Index) ForProxy(proxy *model.Proxy) (*Resources, error) {
	return forProxy(x, proxy)
}

// candidates returns the endpoints of namespace ns that may match selector: the
// shortest posting list among the selector's labels (callers check every label).
func (x *Index) candidates(ns string, selector map[string]string) []int {
	byLabel := x.postings[ns]
	if byLabel == nil || len(selector) == 0 {
		return nil
	}
	var best []int
	first := true
	for k, v := range selector {
		p := byLabel[k+"="+v]
		if first || len(p) < len(best) {
			best, first = p, false
		}
	}
	return best
}

// cached returns the shared resource under key from cache, building it once. build
// runs without the lock held, so builders may use other caches; if two callers race,
// the first stored value wins and both return it.
func cached[T any](x *Index, cache map[string]T, key string, build func() (T, error)) (T, error) {
	x.mu.Lock()
	v, ok := cache[key]
	x.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if prev, ok := cache[key]; ok {
		return prev, nil
	}
	cache[key] = v
	return v, nil
}
