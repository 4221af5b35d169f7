// Package resource turns received xDS resources into small native structs holding only
// what the skein proxy uses, one file per resource type (as grpc-go's xdsresource does).
// Each unmarshaller first checks the message against the allowlist of docs/XDS.md, then
// checks the semantics of the fields it reads; any error means the response is NACKed.
package resource

import (
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the four resource types the proxy subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Listener is an accepted LDS resource: where to listen and what to do with connections.
// Exactly one of HTTP and TCP is set.
type Listener struct {
	Name    string
	Address string // host:port
	// Filters run on each accepted connection before the terminal filter (filters.go).
	Filters []NetworkFilter
	HTTP    *HTTPConnectionManager
	TCP     *TCPProxy
}

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
}

// TCPProxy forwards connections to one of its weighted clusters.
type TCPProxy struct {
	StatPrefix string
	Clusters   []WeightedCluster
}

// WeightedCluster is a cluster name with a share of the traffic.
type WeightedCluster struct {
	Name   string
	Weight uint32
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
)

// LBPolicy is a cluster's load-balancing algorithm.
type LBPolicy int

const (
	LBRoundRobin LBPolicy = iota
	LBLeastRequest
)

// Cluster is an accepted CDS resource.
type Cluster struct {
	Name  string
	Kind  ClusterKind
	LB    LBPolicy
	HTTP2 bool // upstream speaks h2c
	// UseDownstreamProtocol: h2c upstream when the request came in over HTTP/2, else HTTP/1.1.
	UseDownstreamProtocol bool
	ConnectTimeout        time.Duration
	Static                *Endpoints // load_assignment of a STATIC cluster
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
