package model

import (
	"sort"
	"strconv"
)

// ProxyRole says what a proxy is for.
type ProxyRole string

const (
	RoleSidecar ProxyRole = "sidecar"
	RoleGateway ProxyRole = "gateway"
)

// CaptureMode says how traffic reaches a sidecar.
type CaptureMode string

const (
	// CaptureNone: no redirection. The app reaches upstreams through an explicit HTTP
	// proxy port or per-upstream localhost ports; peers reach the app through one inbound
	// listener per container port. Used by `skein up --isolation none`.
	CaptureNone CaptureMode = "none"
	// CaptureIPTables: istio-init style redirection to 15001/15006 (capture issue).
	CaptureIPTables CaptureMode = "iptables"
)

// Proxy describes one connected data-plane proxy: who it is and, in CaptureNone mode,
// which local ports the runtime allocated to it. The runtime hands this to the proxy,
// the proxy reports it in its xDS node metadata, and the translator reads it.
type Proxy struct {
	// ID is the xDS node id, unique per proxy, e.g. "catalog-v1-0.default".
	ID       string            `json:"id"`
	Role     ProxyRole         `json:"role"`
	Workload NamespacedName    `json:"workload"`
	Replica  int               `json:"replica"`
	Labels   map[string]string `json:"labels,omitempty"`
	// ServiceAccount gives the proxy's identity (security issue).
	ServiceAccount string      `json:"serviceAccount,omitempty"`
	Capture        CaptureMode `json:"capture"`
	// IP is the address the proxy's listeners bind to (127.0.0.1 in CaptureNone).
	IP string `json:"ip"`

	// InboundPorts maps a container port to the local port of its inbound listener
	// (CaptureNone): peers' sidecars connect there, the proxy forwards to IP:containerPort.
	InboundPorts map[int]int `json:"inboundPorts,omitempty"`
	// AppPorts maps a container port to the local port where the app really listens
	// (CaptureNone: every replica gets its own, passed to the app as $PORT). The inbound
	// cluster for a container port targets IP:AppPorts[containerPort]; absent means the
	// container port itself.
	AppPorts map[int]int `json:"appPorts,omitempty"`
	// OutboundHTTPPort is the explicit HTTP proxy port the app uses via HTTP_PROXY.
	OutboundHTTPPort int `json:"outboundHTTPPort,omitempty"`
	// UpstreamPorts maps "<service FQDN>:<service port>" to a local port whose listener
	// forwards to that service port (used for TCP and gRPC in CaptureNone).
	UpstreamPorts map[string]int `json:"upstreamPorts,omitempty"`

	// ObservedHosts are the service hosts (FQDNs) the proxy's workload was seen using
	// recently, when its Sidecar infers scope from traffic (Sidecar.InferFromTraffic).
	// The control plane sets it; it never comes from the proxy's metadata.
	ObservedHosts []string `json:"-"`
}

// UpstreamKey is the key of Proxy.UpstreamPorts for a service port.
func UpstreamKey(host string, port int) string {
	return host + ":" + strconv.Itoa(port)
}

// SortedIntKeys returns a map's int keys in order.
func SortedIntKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
