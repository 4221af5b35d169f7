package model

import "strings"

// GatewayController is the GatewayClass spec.controllerName skein implements.
const GatewayController = "skein.dev/gateway-controller"

// GatewayNameLabel is the label of the proxy skein runs for a Gateway API Gateway (the
// label Istio puts on its generated gateway deployments).
const GatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// GatewayProtocol is what a gateway listener speaks to its clients.
type GatewayProtocol string

const (
	GatewayHTTP        GatewayProtocol = "HTTP"
	GatewayHTTPS       GatewayProtocol = "HTTPS" // TLS terminated, then HTTP
	GatewayTLSProtocol GatewayProtocol = "TLS"   // TLS passthrough (by SNI) or terminated then TCP
	GatewayTCP         GatewayProtocol = "TCP"
)

// Gateway is a gateway: the Gateway API Gateway or Istio's Gateway, resolved by the
// config loader into listeners whose routes are already attached, ordered and checked.
// The translator reads only this. Gateways select the proxies that serve them by labels
// (a gateway proxy is a Workload with Role gateway).
type Gateway struct {
	NamespacedName
	// Selector picks the gateway proxies (their workload labels); SelectorNamespace,
	// when set, restricts them to one namespace (the Gateway API's generated proxy).
	Selector          map[string]string `json:"selector"`
	SelectorNamespace string            `json:"selectorNamespace,omitempty"`
	Listeners         []GatewayListener `json:"listeners"`
	Source            Source            `json:"source"`
}

// Selects reports whether the gateway is served by a proxy with these labels.
func (g *Gateway) Selects(ns string, labels map[string]string) bool {
	if g.SelectorNamespace != "" && g.SelectorNamespace != ns {
		return false
	}
	return Selects(g.Selector, labels)
}

// GatewayListener is one port (and, for TLS, one set of server names) of a gateway.
type GatewayListener struct {
	// Name is unique in the gateway: the Gateway API listener name, or Istio's server
	// name / index.
	Name     string          `json:"name"`
	Address  string          `json:"address"` // bind address; 127.0.0.1 when empty
	Port     int             `json:"port"`
	Protocol GatewayProtocol `json:"protocol"`
	// Hostnames are the names the listener serves ("*.example.com" wildcards); empty
	// means any. For TLS protocols they are the SNI names of its filter chain.
	Hostnames []string `json:"hostnames,omitempty"`
	// TLS terminates TLS (HTTPS, TLS with Terminate); nil for plaintext and passthrough.
	TLS *GatewayTLS `json:"tls,omitempty"`
	// VirtualHosts are the HTTP routes (HTTP, HTTPS), one per hostname, most specific
	// hostname first.
	VirtualHosts []GatewayVirtualHost `json:"virtualHosts,omitempty"`
	// TLSRoutes route TLS passthrough connections by SNI (TLS without TLS settings).
	TLSRoutes []GatewaySNIRoute `json:"tlsRoutes,omitempty"`
	// TCP forwards connections (TCP, terminated TLS): the first attached route wins.
	TCP []RouteDestination `json:"tcp,omitempty"`
}

// GatewayTLSMode says how a terminating listener treats client certificates.
type GatewayTLSMode string

const (
	GatewayTLSSimple      GatewayTLSMode = "SIMPLE"       // server certificate only
	GatewayTLSMutual      GatewayTLSMode = "MUTUAL"       // client certificate checked against CACert
	GatewayTLSIstioMutual GatewayTLSMode = "ISTIO_MUTUAL" // the mesh identity and trust bundle
)

// GatewayTLS is a listener's TLS termination: a certificate and key (PEM) from a
// kubernetes.io/tls Secret, and for MUTUAL the CA that client certificates must chain to.
type GatewayTLS struct {
	Mode      GatewayTLSMode `json:"mode"`
	CertChain string         `json:"certChain,omitempty"`
	Key       string         `json:"key,omitempty"`
	CACert    string         `json:"caCert,omitempty"`
	// Secret names where the certificate came from, for tools.
	Secret string `json:"secret,omitempty"`
}

// GatewayVirtualHost is the routes of one hostname of a listener, in the order they
// are tried (the adapter applies the Gateway API precedence rules, or Istio's order).
type GatewayVirtualHost struct {
	Hostname string         `json:"hostname"` // "*" for any
	Routes   []GatewayRoute `json:"routes"`
}

// GatewayRoute is one route of a gateway virtual host: the shared HTTP route model
// (matches, destinations, filters) plus what only gateways have.
type GatewayRoute struct {
	HTTPRoute
	// Owner is the route object (kind/namespace/name) it came from, for tools.
	Owner string `json:"owner,omitempty"`
	// InvalidWeight is the weight of backendRefs that could not be resolved: that share
	// of requests is answered 500, as the Gateway API requires. Destinations' weights
	// are relative to each other and to InvalidWeight.
	InvalidWeight int `json:"invalidWeight,omitempty"`
	// GRPC marks routes of GRPCRoutes (upstream speaks HTTP/2).
	GRPC bool `json:"grpc,omitempty"`
}

// GatewaySNIRoute sends TLS connections whose SNI matches one of Hostnames (empty:
// any) to Destinations, without terminating TLS.
type GatewaySNIRoute struct {
	Hostnames    []string           `json:"hostnames,omitempty"`
	Destinations []RouteDestination `json:"destinations"`
	Owner        string             `json:"owner,omitempty"`
}

// GatewaysFor returns the gateways a gateway proxy serves, in model order.
func (m *Mesh) GatewaysFor(ns string, labels map[string]string) []*Gateway {
	var out []*Gateway
	for _, g := range m.Gateways {
		if g.Selects(ns, labels) {
			out = append(out, g)
		}
	}
	return out
}

// HostnameMatches reports whether a hostname matches a pattern as the Gateway API and
// Istio do: "*" matches anything, "*.example.com" any name with at least one more label
// ending in ".example.com", else equality (case-insensitive).
func HostnameMatches(pattern, host string) bool {
	pattern, host = strings.ToLower(pattern), strings.ToLower(host)
	switch {
	case pattern == "" || pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:]) && len(host) > len(pattern)-1
	}
	return pattern == host
}

// Object is a config object as `skein get KIND NAME -o yaml` shows it: its manifest
// (apiVersion, kind, metadata, spec) and the status skein computed, as plain
// JSON-compatible values.
type Object struct {
	Kind     string         `json:"kind"`
	Name     NamespacedName `json:"name"`
	Manifest map[string]any `json:"manifest"`
	Source   Source         `json:"source"`
}
