// Package resource turns received xDS resources into small native structs holding only
// what the skein proxy uses, one file per resource type (as grpc-go's xdsresource does).
// Each unmarshaller first checks the message against the allowlist of docs/XDS.md, then
// checks the semantics of the fields it reads; any error means the response is NACKed.
package resource

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the resource types the proxy subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// Listener is an accepted LDS resource: where to listen and what to do with
// connections (TCP) or datagrams (UDP, DNS).
type Listener struct {
	Name    string
	Address string // host:port
	// Direction is traffic_direction: Inbound for the workload's callers, Outbound for
	// its calls; Unspecified leaves it to the listener name (see forward.Compile).
	Direction TrafficDirection
	// UDP listeners carry a DNS filter and no filter chains.
	UDP bool
	DNS *DNSFilter

	// FilterChains of a TCP listener; the chain FilterChainMatch selects handles a
	// connection, else DefaultChain, else the connection is closed (Envoy's rules).
	FilterChains []*FilterChain
	DefaultChain *FilterChain
	// ListenerFilters run on each accepted connection before a chain is chosen.
	ListenerFilters ListenerFilters
}

// ListenerFilters are the listener filters the proxy implements, in Envoy's order:
// original_dst, then tls_inspector, then http_inspector.
type ListenerFilters struct {
	// OriginalDst restores a redirected connection's destination (SO_ORIGINAL_DST)
	// as its local address, for chain matching and ORIGINAL_DST clusters.
	OriginalDst bool
	// TLSInspector and HTTPInspector detect TLS (SNI, ALPN) and HTTP/1.x or h2c;
	// nil when not configured.
	TLSInspector  *Inspector
	HTTPInspector *Inspector
	// Timeout bounds the inspectors' wait for the first bytes (listener_filters_timeout,
	// Envoy's default 15 s; 0: no limit). On timeout the connection is closed, unless
	// ContinueOnTimeout, when it goes on as undetected (opaque TCP).
	Timeout           time.Duration
	ContinueOnTimeout bool
}

// Inspector is a configured inspecting listener filter.
type Inspector struct {
	// Disabled, when set, says for which connections the filter does not run
	// (filter_disabled).
	Disabled *PortPredicate
}

// Off reports whether the inspector is disabled for a destination port.
func (i *Inspector) Off(port int) bool { return i.Disabled != nil && i.Disabled.Match(port) }

// PortPredicate is the subset of ListenerFilterChainMatchPredicate skein implements:
// destination port ranges combined with or/and/not, and any.
type PortPredicate struct {
	Any   bool
	Range *PortRange
	Or    []*PortPredicate
	And   []*PortPredicate
	Not   *PortPredicate
}

// Match evaluates the predicate for a destination port.
func (p *PortPredicate) Match(port int) bool {
	switch {
	case p.Any:
		return true
	case p.Range != nil:
		return port >= p.Range.Start && port < p.Range.End
	case p.Not != nil:
		return !p.Not.Match(port)
	case p.Or != nil:
		for _, q := range p.Or {
			if q.Match(port) {
				return true
			}
		}
		return false
	case p.And != nil:
		for _, q := range p.And {
			if !q.Match(port) {
				return false
			}
		}
		return true
	}
	return false
}

// PortRange is [Start, End).
type PortRange struct{ Start, End int }

// FilterChain is one filter chain: its match, its network filters (RBAC) and its
// terminal filter (HTTP or TCP).
type FilterChain struct {
	// Name identifies the chain within its listener; chains without a name are
	// named by their index ("0", "1", ...; "default" for the default chain).
	Name  string
	Match FilterChainMatch
	// Filters run on each accepted connection before the terminal filter, HTTP or
	// TCP (filters.go).
	Filters []NetworkFilter
	HTTP    *HTTPConnectionManager
	TCP     *TCPProxy
	// TLS terminates TLS on the chain's connections (transport_socket); nil means
	// plaintext.
	TLS *DownstreamTLS
}

// FilterChainMatch is the subset of Envoy's FilterChainMatch the proxy implements.
// Empty fields match anything.
type FilterChainMatch struct {
	DestinationPort      int
	PrefixRanges         []netip.Prefix
	ServerNames          []string // lower case; "*.example.com" is a wildcard
	TransportProtocol    string   // "raw_buffer" or "tls"
	ApplicationProtocols []string // e.g. "http/1.1", "h2c", "h2"
}

// DNSFilter is an accepted envoy.filters.udp.dns_filter: names answered from the table,
// other names forwarded when Forward is set, else answered NXDOMAIN.
type DNSFilter struct {
	StatPrefix string
	Table      []DNSName
	Forward    bool
	// Resolvers are host:port upstreams; empty means the system's (/etc/resolv.conf).
	Resolvers       []string
	ResolverTimeout time.Duration
}

// DNSName is one name of the table and its addresses.
type DNSName struct {
	Name      string // lower case, without the trailing dot
	Addresses []netip.Addr
	TTL       time.Duration
}

// SecretNames lists the SDS secrets the listener's chains reference.
func (l *Listener) SecretNames() []string {
	var out []string
	for _, c := range l.Chains() {
		if c.TLS != nil {
			out = append(out, c.TLS.SecretNames()...)
		}
	}
	return out
}

// ForwardClientCert is HttpConnectionManager.forward_client_cert_details: what happens
// to the x-forwarded-client-cert header.
type ForwardClientCert int

const (
	XFCCSanitize ForwardClientCert = iota // Envoy's default: remove it
	XFCCForwardOnly
	XFCCAppendForward
	XFCCSanitizeSet
	XFCCAlwaysForwardOnly
)

// ClientCertDetails is set_current_client_cert_details: which fields of the client
// certificate go into x-forwarded-client-cert (Hash and By are always added).
type ClientCertDetails struct {
	Subject, Cert, Chain, DNS, URI bool
}

// TrafficDirection is Envoy's core.v3.TrafficDirection.
type TrafficDirection int

const (
	DirectionUnspecified TrafficDirection = iota
	DirectionInbound
	DirectionOutbound
)

// Codec is the downstream HTTP codec an HTTP listener accepts.
type Codec int

const (
	CodecAuto Codec = iota // HTTP/1.1 and h2c on the same port
	CodecHTTP1
	CodecHTTP2
)

// HTTPConnectionManager routes HTTP requests. Exactly one of RDSName and Inline is set.
type HTTPConnectionManager struct {
	StatPrefix string
	Codec      Codec
	RDSName    string
	Inline     *RouteConfig
	// Filters run on each request, in order, before the router (filters.go).
	Filters []HTTPFilter
	// ForwardClientCert and ClientCertDetails govern x-forwarded-client-cert.
	ForwardClientCert ForwardClientCert
	ClientCertDetails ClientCertDetails
}

// TCPProxy forwards connections to one of its weighted clusters.
type TCPProxy struct {
	StatPrefix string
	Clusters   []WeightedCluster
}

// WeightedCluster is a cluster name with a share of the traffic, and the header edits
// of requests sent to it (routes' weighted clusters only).
type WeightedCluster struct {
	Name            string
	Weight          uint32
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation
}

// RouteConfig is an accepted RDS resource (or an inline route_config).
type RouteConfig struct {
	Name         string
	VirtualHosts []VirtualHost
}

// VirtualHost is a group of routes chosen by the request's host.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []Route
}

// Route is one match and where matching requests go.
type Route struct {
	Name     string
	Match    RouteMatch
	Clusters []WeightedCluster
	// Timeout is the route timeout; 0 means none. Envoy defaults an unset timeout to
	// 15 s; skein's translator always sets it when it wants one, as Istio does with 0s.
	Timeout time.Duration
	// HashPolicies key consistent-hash load balancing (RING_HASH, MAGLEV clusters).
	HashPolicies []HashPolicy

	// Redirect, when set, answers instead of forwarding (Clusters is empty).
	Redirect *Redirect
	Rewrite  Rewrite
	// RequestHeaders and ResponseHeaders are the route's header edits.
	RequestHeaders, ResponseHeaders HeaderMutation
	Retry                           *RetryPolicy
	Mirrors                         []Mirror
	// Fault and CORS are the per-route configs of those filters (typed_per_filter_config).
	Fault *Fault
	CORS  *CORS
	// Direct, when set, answers the request itself (direct_response) instead of
	// forwarding; Clusters is then empty.
	Direct *DirectResponse
	// ClusterNotFoundStatus is the status when the chosen cluster does not exist
	// (cluster_not_found_response_code): 503 by default, 404 or 500 when set.
	ClusterNotFoundStatus int
}

// DirectResponse is a route's fixed answer.
type DirectResponse struct {
	Status int
	Body   string
}

// PathKind says how RouteMatch compares the path.
type PathKind int

const (
	PathPrefix PathKind = iota
	PathExact
	PathRegex
)

// RouteMatch holds the conditions of a route, all of which must hold.
type RouteMatch struct {
	Kind          PathKind
	Path          string         // prefix or exact path; lower-cased when !CaseSensitive
	Regex         *regexp.Regexp // anchored, for PathRegex
	CaseSensitive bool
	Headers       []HeaderMatcher
	Query         []QueryMatcher
}

// StringKind says how a header value is compared.
type StringKind int

const (
	StringExact StringKind = iota
	StringPrefix
	StringSuffix
	StringContains
	StringRegex
)

// HeaderMatcher matches one request header.
type HeaderMatcher struct {
	Name       string // canonical header key
	Present    bool   // present_match: only presence is checked
	Kind       StringKind
	Value      string // lower-cased when IgnoreCase
	Regex      *regexp.Regexp
	IgnoreCase bool
	Invert     bool
}

// ClusterKind is how a cluster's endpoints are discovered.
type ClusterKind int

const (
	ClusterEDS ClusterKind = iota
	ClusterStatic
	// ClusterOriginalDst sends to the downstream connection's original destination
	// (Istio's PassthroughCluster).
	ClusterOriginalDst
)

// LBPolicy is a cluster's load-balancing algorithm.
type LBPolicy int

const (
	LBRoundRobin LBPolicy = iota
	LBLeastRequest
	// LBClusterProvided: the cluster picks the host (ORIGINAL_DST).
	LBClusterProvided
	LBRandom
	LBRingHash
	LBMaglev
)

// Cluster is an accepted CDS resource.
type Cluster struct {
	// TLS is the cluster's transport_socket: nil for plaintext.
	TLS *UpstreamTLS
	// TLSMatches are transport_socket_matches, tried in order per endpoint; when none
	// matches an endpoint, TLS applies.
	TLSMatches []TransportSocketMatch
	Name       string
	Kind       ClusterKind
	LB         LBPolicy
	HTTP2      bool // upstream speaks h2c
	// UseDownstreamProtocol: h2c upstream when the request came in over HTTP/2, else HTTP/1.1.
	UseDownstreamProtocol bool
	ConnectTimeout        time.Duration
	Static                *Endpoints // load_assignment of a STATIC (or DNS) cluster
	// DNS: a STRICT_DNS or LOGICAL_DNS cluster, whose Static endpoints are DNS names
	// resolved when connecting.
	DNS bool
	// BindAddress is the source address of upstream connections
	// (upstream_bind_config.source_address); empty means the system's choice.
	BindAddress string
	// Policy: balancing refinements, circuit breakers, outlier detection, pool options.
	Policy ClusterPolicy
}

// Endpoints is an accepted EDS resource.
type Endpoints struct {
	ClusterName string
	Endpoints   []Endpoint
}

// Endpoint is one upstream host.
type Endpoint struct {
	Address string // host:port
	Healthy bool
	Weight  uint32
	// SocketMatch is the endpoint's metadata filter_metadata["envoy.transport_socket_match"]
	// (string values only), matched against a cluster's transport_socket_matches.
	SocketMatch map[string]string
	// Priority and Locality come from the endpoint's LocalityLbEndpoints, with the
	// locality's load_balancing_weight (0: none given).
	Priority       uint32
	Locality       string // "region/zone/subzone", "" when unknown
	LocalityWeight uint32
}

// TLSFor returns the transport socket a cluster uses for an endpoint: the first
// transport_socket_match whose keys the endpoint's metadata all carry, else the
// cluster's transport_socket.
func (c *Cluster) TLSFor(e Endpoint) *UpstreamTLS {
	for _, m := range c.TLSMatches {
		ok := true
		for k, v := range m.Match {
			if e.SocketMatch[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return m.TLS
		}
	}
	return c.TLS
}

// SecretNames lists the SDS secrets the cluster's transport sockets reference.
func (c *Cluster) SecretNames() []string {
	var out []string
	if c.TLS != nil {
		out = append(out, c.TLS.SecretNames()...)
	}
	for _, m := range c.TLSMatches {
		if m.TLS != nil {
			out = append(out, m.TLS.SecretNames()...)
		}
	}
	return out
}

// Decoded pairs a native resource with the proto it came from, for config dumps.
type Decoded[T any] struct {
	Name     string
	Resource T
	Proto    proto.Message
}

// UnmarshalError says which resource failed and why.
type UnmarshalError struct {
	Type string
	Name string
	Err  error
}

func (e *UnmarshalError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("%s: %v", e.Type, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Type, e.Name, e.Err)
}

func (e *UnmarshalError) Unwrap() error { return e.Err }

// decode unpacks an Any of the expected type.
func decode(a *anypb.Any, typeURL string, m proto.Message) error {
	if a.GetTypeUrl() != typeURL {
		return fmt.Errorf("resource type %q, want %q", a.GetTypeUrl(), typeURL)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return fmt.Errorf("decoding %s: %w", typeURL, err)
	}
	return nil
}

// compileRegex compiles an RE2 pattern anchored for a full match, as Envoy's safe_regex.
func compileRegex(pattern string, ignoreCase bool) (*regexp.Regexp, error) {
	prefix := ""
	if ignoreCase {
		prefix = "(?i)"
	}
	re, err := regexp.Compile(prefix + "^(?:" + pattern + ")$")
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", pattern, err)
	}
	return re, nil
}
