// Package model is skein's one canonical description of a mesh: services, workloads,
// endpoints, routes and destination policies. Every config source (Istio, Kubernetes,
// the skein Workload kind, later Gateway API, SMI, Linkerd) is translated into this
// model, and the xDS translator reads only this model. It imports no proto and no
// Kubernetes package on purpose, so adapters and translators can evolve independently.
package model

import (
	"fmt"
	"sort"
	"time"
)

// DefaultDomainSuffix is the cluster domain used to build fully qualified service names.
const DefaultDomainSuffix = "svc.cluster.local"

// Protocol is the application protocol of a port, chosen as Istio does from the port
// name prefix or appProtocol.
type Protocol string

const (
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolTCP     Protocol = "TCP"
	ProtocolUnknown Protocol = "" // not declared: sniffed later (capture issue), TCP for now
)

// IsHTTP reports whether traffic on the port is parsed as HTTP (any version).
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// IsHTTP2 reports whether the upstream connection must speak HTTP/2 (h2c in the clear).
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// Source says where an object came from, so errors and tools can point at it.
type Source struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

func (s Source) String() string {
	if s.File == "" {
		return "<unknown>"
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// NamespacedName identifies an object.
type NamespacedName struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (n NamespacedName) String() string { return n.Name + "." + n.Namespace }

// Mesh is an immutable snapshot of the whole configuration. Producers build a new Mesh
// for every change; consumers never mutate one they were given.
type Mesh struct {
	// Generation increases with every accepted configuration.
	Generation int64
	// DomainSuffix is the cluster domain; DefaultDomainSuffix when empty.
	DomainSuffix string

	Services         []*Service
	Workloads        []*Workload
	VirtualServices  []*VirtualService
	DestinationRules []*DestinationRule
	// Sidecars scope proxies' outbound config (Istio's Sidecar resource).
	Sidecars []*Sidecar `json:"Sidecars,omitempty"`

	// PeerAuthentications are Istio mTLS policies (see security.go).
	PeerAuthentications []*PeerAuthentication `json:"PeerAuthentications,omitempty"`
	// RootNamespace is Istio's meshConfig.rootNamespace; DefaultRootNamespace when empty.
	RootNamespace string `json:"RootNamespace,omitempty"`
	// Telemetries are Istio Telemetry objects (telemetry.go).
	Telemetries []*Telemetry `json:"Telemetries,omitempty"`
	// Security is the CA's trust domain and bundle; nil means no CA and no mTLS.
	Security *Security `json:"Security,omitempty"`
	// AuthorizationPolicies and RequestAuthentications (authz.go).
	AuthorizationPolicies  []*AuthorizationPolicy   `json:",omitempty"`
	RequestAuthentications []*RequestAuthentication `json:",omitempty"`

	// Gateways are ingress/egress gateways (gateway.go): Gateway API Gateways with
	// their routes attached, and Istio Gateways with their bound VirtualServices.
	Gateways []*Gateway `json:",omitempty"`
	// MeshRoutes are Gateway API routes whose parent is a Service (GAMMA), by service
	// FQDN, in precedence order: sidecars route calls to that service with them.
	MeshRoutes map[string][]GatewayRoute `json:",omitempty"`
	// Objects are config objects as `skein get` shows them, with their computed status
	// (Gateway API kinds); they do not affect translation.
	Objects []*Object `json:"-"`

	// Endpoints come from the registry (the local runtime, later Kubernetes), not from
	// config files; the control plane joins them with the config into one Mesh.
	Endpoints []Endpoint
	// WorkloadEntries are Istio WorkloadEntries (workloadentry.go); their endpoints are
	// added to Endpoints by whoever builds the registry (WorkloadEntryEndpoints).
	WorkloadEntries []*WorkloadEntry `json:",omitempty"`

	// Mesh-wide settings of transparent capture (see capture.go).
	OutboundTrafficPolicy    OutboundTrafficPolicy `json:",omitempty"`
	ProtocolDetectionTimeout time.Duration         `json:",omitempty"`
}

// Suffix returns the cluster domain suffix in effect.
func (m *Mesh) Suffix() string {
	if m.DomainSuffix == "" {
		return DefaultDomainSuffix
	}
	return m.DomainSuffix
}

// Service is a Kubernetes-style Service: a name, ports and a label selector.
type Service struct {
	NamespacedName
	Labels   map[string]string `json:"labels,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []ServicePort     `json:"ports"`
	// VIP is the service's virtual IP (a ClusterIP): spec.clusterIP when given, else one
	// allocated from VIPRange (see vip.go). Captured clients reach the service at it.
	VIP string `json:"vip,omitempty"`
	// Host is the hostname a ServiceEntry declares (any DNS name, used as written);
	// empty for Kubernetes Services, whose hostname is <name>.<ns>.<suffix>.
	Host string `json:"host,omitempty"`
	// Entry holds what only a ServiceEntry says (serviceentry.go); nil otherwise.
	Entry  *ServiceEntry `json:"entry,omitempty"`
	Source Source        `json:"source"`
}

// Hostname is the service's fully qualified name, e.g. catalog.default.svc.cluster.local,
// or the host a ServiceEntry declares.
func (s *Service) Hostname(suffix string) string {
	if s.Host != "" {
		return s.Host
	}
	return s.Name + "." + s.Namespace + "." + suffix
}

// Port returns the service port with the given number.
func (s *Service) Port(number int) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == number {
			return p, true
		}
	}
	return ServicePort{}, false
}

// ServicePort is one port of a service. TargetPort is a number, or TargetPortName names
// a container port of the selected workloads; both empty means TargetPort = Port.
type ServicePort struct {
	Name           string   `json:"name,omitempty"`
	Port           int      `json:"port"`
	TargetPort     int      `json:"targetPort,omitempty"`
	TargetPortName string   `json:"targetPortName,omitempty"`
	Protocol       Protocol `json:"protocol"`
}

// Workload is the skein Workload kind: a process run by `skein up` (or, later, a pod).
type Workload struct {
	NamespacedName
	Labels         map[string]string `json:"labels,omitempty"`
	ServiceAccount string            `json:"serviceAccount"`
	Replicas       int               `json:"replicas"`
	Command        []string          `json:"command,omitempty"`
	Env            []EnvVar          `json:"env,omitempty"`
	Ports          []ContainerPort   `json:"ports,omitempty"`
	// Role is RoleGateway for a gateway proxy without an app (spec.role: gateway, or a
	// Gateway API Gateway's generated proxy); empty means a sidecar.
	Role ProxyRole `json:"role,omitempty"`
	// Capture holds per-workload overrides of the traffic capture rules (Istio's
	// traffic.sidecar.istio.io annotations); nil means the defaults.
	Capture *CaptureOverrides `json:"capture,omitempty"`
	Source  Source            `json:"source"`
}

// EnvVar is one environment variable of a workload.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ContainerPort is a port the workload's process listens on.
type ContainerPort struct {
	Name          string   `json:"name,omitempty"`
	ContainerPort int      `json:"containerPort"`
	Protocol      string   `json:"protocol,omitempty"` // TCP (UDP is not meshed)
	AppProtocol   Protocol `json:"appProtocol,omitempty"`
}

// Selects reports whether a label selector matches the labels. An empty selector
// selects nothing, as a Kubernetes Service selector does.
func Selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Endpoint is one reachable instance of a workload port: where mesh traffic is sent
// (the sidecar's inbound address for that port) and what it carries.
type Endpoint struct {
	Workload NamespacedName    `json:"workload"`
	Replica  int               `json:"replica"`
	Labels   map[string]string `json:"labels,omitempty"`
	Address  string            `json:"address"`
	Port     int               `json:"port"`
	// TargetPort is the container port the sidecar forwards to.
	TargetPort int `json:"targetPort"`
	// Healthy is false while the replica's process is not running.
	Healthy bool `json:"healthy"`
	// Sidecar is true when the endpoint is a skein sidecar that terminates mesh mTLS
	// (Istio's security.istio.io/tlsMode=istio label): auto-mTLS uses TLS towards it.
	Sidecar bool `json:"sidecar,omitempty"`
	// Service and ServicePort, when set, bind the endpoint to that one service port
	// (a WorkloadEntry's: its port is declared, not a container port of a Workload).
	Service     string `json:"service,omitempty"`
	ServicePort int    `json:"servicePort,omitempty"`
}

// VirtualService carries Istio VirtualService semantics for the hosts it names.
type VirtualService struct {
	NamespacedName
	// Hosts as written, and resolved to service hostnames (FQDN) by the adapter.
	Hosts    []string    `json:"hosts"`
	Gateways []string    `json:"gateways,omitempty"`
	HTTP     []HTTPRoute `json:"http,omitempty"`
	TCP      []TCPRoute  `json:"tcp,omitempty"`
	// TLS routes pick a destination by the ClientHello's SNI (l4route.go).
	TLS    []TLSRoute `json:"tls,omitempty"`
	Source Source     `json:"source"`
}

// HTTPRoute is one rule of a VirtualService: the first rule whose any match applies wins.
// A rule either forwards to Destinations or answers with Redirect; the other actions
// (route.go) change how it does so.
type HTTPRoute struct {
	Name         string             `json:"name,omitempty"`
	Matches      []HTTPMatch        `json:"matches,omitempty"` // empty: matches everything
	Destinations []RouteDestination `json:"destinations,omitempty"`
	Timeout      time.Duration      `json:"timeout,omitempty"`

	Redirect *HTTPRedirect `json:"redirect,omitempty"`
	Rewrite  *HTTPRewrite  `json:"rewrite,omitempty"`
	// Headers are route-level header edits; destinations may carry their own.
	Headers *Headers `json:"headers,omitempty"`
	// Retries nil means DefaultRetryPolicy; Attempts 0 means no retries.
	Retries *RetryPolicy `json:"retries,omitempty"`
	Fault   *HTTPFault   `json:"fault,omitempty"`
	Mirrors []Mirror     `json:"mirrors,omitempty"`
	CORS    *CORSPolicy  `json:"cors,omitempty"`
	// Delegate names the VirtualService whose rules handle this rule's requests (see
	// delegate.go); the loader resolves it, so translators never see one.
	Delegate *NamespacedName `json:"delegate,omitempty"`
}

// HTTPMatch is the conjunction of its set conditions.
type HTTPMatch struct {
	Name    string                 `json:"name,omitempty"`
	URI     *StringMatch           `json:"uri,omitempty"`
	Headers map[string]StringMatch `json:"headers,omitempty"`
	// Port restricts the match to one service port; 0 means any.
	Port int `json:"port,omitempty"`

	Scheme    *StringMatch `json:"scheme,omitempty"`
	Method    *StringMatch `json:"method,omitempty"`
	Authority *StringMatch `json:"authority,omitempty"`
	// WithoutHeaders must all fail to match (a present-kind entry: the header is absent).
	WithoutHeaders map[string]StringMatch `json:"withoutHeaders,omitempty"`
	QueryParams    map[string]StringMatch `json:"queryParams,omitempty"`
	// IgnoreURICase makes the URI match case-insensitive.
	IgnoreURICase bool `json:"ignoreUriCase,omitempty"`
	// SourceLabels and SourceNamespace restrict the match to calling workloads with
	// these labels / in this namespace; they are decided per proxy at translation.
	SourceLabels    map[string]string `json:"sourceLabels,omitempty"`
	SourceNamespace string            `json:"sourceNamespace,omitempty"`
	// Gateways restricts the match to these gateways ("ns/name", or "mesh" for
	// sidecars), overriding the VirtualService's gateways; empty: all of those.
	Gateways []string `json:"gateways,omitempty"`
}

// AppliesToGateway reports whether a match holds on a gateway ("ns/name" or "mesh").
func (m *HTTPMatch) AppliesToGateway(ref string) bool {
	if len(m.Gateways) == 0 {
		return true
	}
	for _, g := range m.Gateways {
		if g == ref {
			return true
		}
	}
	return false
}

// AppliesToSource reports whether a match's source conditions hold for a caller
// (nil: a caller without identity, e.g. a proxyless client, which matches only
// matches without source conditions).
func (m *HTTPMatch) AppliesToSource(p *Proxy) bool {
	if len(m.SourceLabels) == 0 && m.SourceNamespace == "" {
		return true
	}
	if p == nil {
		return false
	}
	if m.SourceNamespace != "" && m.SourceNamespace != p.Workload.Namespace {
		return false
	}
	for k, v := range m.SourceLabels {
		if p.Labels[k] != v {
			return false
		}
	}
	return true
}

// MatchKind says how a StringMatch compares.
type MatchKind string

const (
	MatchExact  MatchKind = "exact"
	MatchPrefix MatchKind = "prefix"
	MatchRegex  MatchKind = "regex" // RE2, full match as Envoy's safe_regex
	// MatchPresent only checks that a header or query parameter is there (Istio's
	// empty StringMatch).
	MatchPresent MatchKind = "present"
)

// StringMatch is an exact, prefix or regex comparison, or a presence check.
type StringMatch struct {
	Kind  MatchKind `json:"kind"`
	Value string    `json:"value"`
}

// RouteDestination sends a share of a route's traffic to a service (and subset).
type RouteDestination struct {
	Host   string `json:"host"` // service FQDN
	Subset string `json:"subset,omitempty"`
	Port   int    `json:"port,omitempty"` // 0: the only/matching service port
	Weight int    `json:"weight"`         // 0..100; a single destination has 100
	// Headers edit requests sent to, and responses from, this destination.
	Headers *Headers `json:"headers,omitempty"`
}

// TCPRoute forwards connections, optionally restricted to a port.
type TCPRoute struct {
	Port int `json:"port,omitempty"`
	// L4Conditions are the match's other conditions (l4route.go).
	L4Conditions
	Destinations []RouteDestination `json:"destinations"`
}

// TrafficPolicy is a DestinationRule trafficPolicy (top level, per subset or per port).
// A nil component means "not set here": merging (EffectiveTrafficPolicy) takes it from
// the level below, as Istio does.
type TrafficPolicy struct {
	LoadBalancer     *LoadBalancerSettings `json:"loadBalancer,omitempty"`
	ConnectionPool   *ConnectionPool       `json:"connectionPool,omitempty"`
	OutlierDetection *OutlierDetection     `json:"outlierDetection,omitempty"`
	// TLS is trafficPolicy.tls; nil leaves the decision to auto-mTLS.
	TLS *ClientTLS `json:"tls,omitempty"`
	// PortLevel is trafficPolicy.portLevelSettings.
	PortLevel []PortTrafficPolicy `json:"portLevel,omitempty"`
}

// DestinationRule defines subsets and policies for one host.
type DestinationRule struct {
	NamespacedName
	Host          string         `json:"host"` // service FQDN
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`
	Subsets       []Subset       `json:"subsets,omitempty"`
	Source        Source         `json:"source"`
}

// Subset is a named group of a service's endpoints, chosen by labels.
type Subset struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	TrafficPolicy *TrafficPolicy    `json:"trafficPolicy,omitempty"`
}

// ServiceByHost finds a service by its fully qualified hostname.
func (m *Mesh) ServiceByHost(host string) *Service {
	for _, s := range m.Services {
		if s.Hostname(m.Suffix()) == host {
			return s
		}
	}
	return nil
}

// DestinationRuleFor returns the DestinationRule for a host, if any. When several exist,
// the oldest by source order wins, as Istio takes the oldest.
func (m *Mesh) DestinationRuleFor(host string) *DestinationRule {
	for _, dr := range m.DestinationRules {
		if dr.Host == host {
			return dr
		}
	}
	return nil
}

// SortedKeys returns a map's keys in order, for deterministic output.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
