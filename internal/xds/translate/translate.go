// Package translate turns the canonical mesh model into the Envoy xDS v3 resources one
// proxy needs, following docs/XDS.md. It is pure: the same mesh and proxy always give
// the same resources in the same order (everything is sorted by name), and it never
// mutates its inputs. One file per resource type: listener.go, route.go, cluster.go,
// endpoint.go.
package translate

import (
	"errors"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/model"
)

// Resources holds one proxy's xDS resources, one slice per type, each sorted by
// resource name. ByType gives the map go-control-plane's NewSnapshot takes.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
	// Secrets are SDS secrets (the ROOTCA trust bundle) when mesh mTLS is on.
	Secrets []types.Resource
}

// ByType returns the resources keyed by type URL (resource.ListenerType, ...).
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ListenerType: r.Listeners,
		resource.RouteType:    r.Routes,
		resource.ClusterType:  r.Clusters,
		resource.EndpointType: r.Endpoints,
		resource.SecretType:   r.Secrets,
	}
}

// ErrUnsupportedProxy is returned for proxies this translator cannot configure yet
// (gateways).
var ErrUnsupportedProxy = errors.New("unsupported proxy")

// ErrInvalidRoute is wrapped by errors about routes that cannot be translated.
var ErrInvalidRoute = errors.New("invalid route")

// ConfigError names the model object (and its source file:line) a translation error
// comes from.
type ConfigError struct {
	Kind   string // e.g. "VirtualService"
	Name   model.NamespacedName
	Source model.Source
	Err    error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s %s (%s): %v", e.Kind, e.Name, e.Source, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ForProxy builds the resources for one proxy. A nil proxy is a generic client (a node
// without SKEIN_PROXY metadata: proxyless gRPC, Envoy): it gets outbound clusters,
// endpoints and one route configuration per HTTP service port, and no listeners.
func ForProxy(mesh *model.Mesh, proxy *model.Proxy) (*Resources, error) {
	return forProxy(NewIndex(mesh), proxy)
}

func forProxy(idx *Index, proxy *model.Proxy) (*Resources, error) {
	if proxy != nil {
		if proxy.Role != "" && proxy.Role != model.RoleSidecar && proxy.Role != model.RoleGateway {
			return nil, fmt.Errorf("proxy %s: role %q: %w", proxy.ID, proxy.Role, ErrUnsupportedProxy)
		}
		if proxy.Capture != "" && proxy.Capture != model.CaptureNone && proxy.Capture != model.CaptureIPTables {
			return nil, fmt.Errorf("proxy %s: capture mode %q: %w", proxy.ID, proxy.Capture, ErrUnsupportedProxy)
		}
	}
	b := newBuilder(idx, proxy)
	res := &Resources{
		Clusters:  b.clusters(),
		Endpoints: b.endpoints(),
		Secrets:   b.secrets(),
	}
	var err error
	if b.gateway() {
		if res.Routes, err = b.gatewayRoutes(); err != nil {
			return nil, err
		}
		if res.Listeners, err = b.gatewayListeners(); err != nil {
			return nil, err
		}
	} else {
		if res.Routes, err = b.routes(); err != nil {
			return nil, err
		}
		if res.Listeners, err = b.listeners(); err != nil {
			return nil, err
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	return res, nil
}

// builder holds the read-only indexes one translation needs.
type builder struct {
	idx       *Index
	mesh      *model.Mesh
	proxy     *model.Proxy // nil: generic client
	suffix    string
	ports     []servicePort   // service ports in the proxy's scope, sorted by host then port
	allPorts  []servicePort   // every service port (inbound protocol detection)
	inScope   map[string]bool // hosts in ports; nil: every host
	workloads map[model.NamespacedName]*model.Workload
	err       error // first internal (marshalling) error
}

// servicePort is one port of one service, with its hostname.
type servicePort struct {
	svc     *model.Service
	host    string
	port    model.ServicePort
	key     string // model.UpstreamKey(host, port)
	cluster string // OutboundClusterName(port, "", host)
}

func newBuilder(idx *Index, proxy *model.Proxy) *builder {
	b := &builder{
		idx:       idx,
		mesh:      idx.mesh,
		proxy:     proxy,
		suffix:    idx.suffix,
		workloads: idx.workloads,
		allPorts:  idx.ports,
	}
	b.ports, b.inScope = b.scopePorts(b.allPorts)
	b.ports = b.exported(b.ports)
	return b
}

// gateway reports whether the proxy is a gateway (gateway.go).
func (b *builder) gateway() bool { return b.proxy != nil && b.proxy.Role == model.RoleGateway }

// servicePort finds a service port by hostname and number.
func (b *builder) servicePort(host string, port int) (servicePort, bool) {
	i, ok := b.idx.portIndex[model.UpstreamKey(host, port)]
	if !ok || (b.inScope != nil && !b.inScope[host]) {
		return servicePort{}, false
	}
	return b.idx.ports[i], true
}

// shared returns the Index's cached resource under key, building it with build on
// first use. A marshalling error while building is not cached: it stays this builder's.
func shared[T any](b *builder, cache map[string]T, key string, build func() T) T {
	v, _ := cached(b.idx, cache, key, func() (T, error) {
		before := b.err
		v := build()
		if b.err != nil && before == nil {
			return v, b.err
		}
		return v, nil
	})
	return v
}

// targetPort resolves a service port's target port for one workload: the number, the
// workload's container port of that name, or the service port itself.
func (b *builder) targetPort(p model.ServicePort, workload model.NamespacedName) (int, bool) {
	switch {
	case p.TargetPort != 0:
		return p.TargetPort, true
	case p.TargetPortName != "":
		w := b.workloads[workload]
		if w == nil {
			return 0, false
		}
		for _, cp := range w.Ports {
			if cp.Name == p.TargetPortName {
				return cp.ContainerPort, true
			}
		}
		return 0, false
	default:
		return p.Port, true
	}
}

// toAny packs a message deterministically, so content hashes of resources are stable.
func (b *builder) toAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil && b.err == nil {
		b.err = fmt.Errorf("marshal %T: %w", m, err)
	}
	return a
}

// sortByName sorts resources by their xDS resource name.
func sortByName[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, it := range items {
		out[i] = it
	}
	sort.SliceStable(out, func(i, j int) bool {
		return resourceName(out[i]) < resourceName(out[j])
	})
	return out
}

func resourceName(r types.Resource) string {
	type named interface{ GetName() string }
	type clusterNamed interface{ GetClusterName() string }
	switch v := r.(type) {
	case named:
		return v.GetName()
	case clusterNamed:
		return v.GetClusterName()
	}
	return ""
}
