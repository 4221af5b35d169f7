// Package streaminfo is what the proxy knows about one HTTP request or TCP connection
// while and after it is served: where it came in, where it went, how it ended and the
// Envoy response flags that say why. The forwarder fills one Info per request or
// connection; when the stream ends the Info is handed, read-only, to the telemetry
// sinks (metrics, access log, tap, tracing), which must not modify it.
package streaminfo

import (
	"strings"
	"time"
)

// Direction says whether a listener serves the workload's own callers (inbound) or
// the workload's calls to others (outbound).
type Direction uint8

const (
	Outbound Direction = iota
	Inbound
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Protocol is the request protocol as Istio's request_protocol label spells it.
type Protocol uint8

const (
	ProtocolHTTP Protocol = iota
	ProtocolGRPC
	ProtocolTCP
)

func (p Protocol) String() string {
	switch p {
	case ProtocolGRPC:
		return "grpc"
	case ProtocolTCP:
		return "tcp"
	}
	return "http"
}

// SecurityPolicy is Istio's connection_security_policy.
type SecurityPolicy uint8

const (
	SecurityUnknown SecurityPolicy = iota
	SecurityNone
	SecurityMutualTLS
)

func (s SecurityPolicy) String() string {
	switch s {
	case SecurityNone:
		return "none"
	case SecurityMutualTLS:
		return "mutual_tls"
	}
	return "unknown"
}

// Peer is a workload at the other end of a request, as learnt by metadata exchange
// (see internal/proxy/telemetry/peer.go) or from the proxy's own node metadata. The
// proxy interns Peers, so a *Peer can be compared by pointer and used in map keys.
type Peer struct {
	Workload  string `json:"workload,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	App       string `json:"app,omitempty"`
	Version   string `json:"version,omitempty"`
	// Principal is the SPIFFE ID of the peer's certificate, when the connection was
	// mutual TLS; empty otherwise.
	Principal string `json:"principal,omitempty"`
}

// Service is the destination service of a request, from the outbound cluster name
// (outbound|port|subset|fqdn) or the inbound request's authority.
type Service struct {
	Host      string // FQDN
	Name      string
	Namespace string
}

// Info is one request or connection. The forwarder owns it until Finish; sinks get it
// read-only afterwards.
type Info struct {
	Start    time.Time
	Duration time.Duration

	Listener  string
	Direction Direction
	Protocol  Protocol

	// HTTP request fields (empty for TCP).
	Method, Path, Authority, Scheme, UserAgent, RequestID string
	HTTPVersion                                           string // "HTTP/1.1", "HTTP/2"
	VirtualHost, Route                                    string

	Cluster      string
	UpstreamHost string
	Service      *Service

	// BytesReceived from downstream (request body, or TCP bytes sent upstream);
	// BytesSent to downstream (response body, or TCP bytes received from upstream).
	BytesReceived, BytesSent int64
	// ResponseCode is the HTTP status sent downstream; 0 when none was (TCP, or a
	// downstream that went away first).
	ResponseCode int
	// GRPCStatus is the grpc-status sent downstream, -1 when there was none.
	GRPCStatus int
	Flags      Flags
	// UpstreamRetries counts the retries made (attempts after the first).
	UpstreamRetries int

	// DownstreamPeer called us (inbound: the source workload; outbound: ourselves).
	// UpstreamPeer answered (outbound: the destination workload, from the response's
	// metadata exchange; inbound: ourselves).
	DownstreamPeer, UpstreamPeer *Peer
	// DownstreamPrincipal / UpstreamPrincipal are the peers' SPIFFE IDs when the
	// respective connection was mutual TLS.
	DownstreamPrincipal, UpstreamPrincipal string
	Security                               SecurityPolicy
	DownstreamAddress                      string

	TraceID, SpanID string
	Sampled         bool

	// ResponseCodeDetails says why the proxy answered itself, as Envoy's
	// %RESPONSE_CODE_DETAILS%, e.g. rbac_access_denied_matched_policy[...]; empty otherwise.
	ResponseCodeDetails string
	// AuditPolicy is the AUDIT policy (RBAC action LOG) that matched this request or
	// connection, e.g. ns[default]-policy[audit-admin]-rule[0]; empty when none did.
	// Istio's AUDIT sets Envoy's access_log_hint; skein writes "audit" in the access log.
	AuditPolicy string
}

// New starts an Info now.
func New(listener string, dir Direction, p Protocol) *Info {
	return &Info{Start: time.Now(), Listener: listener, Direction: dir, Protocol: p, GRPCStatus: -1}
}

// Flags is a set of Envoy response flags.
type Flags uint32

// Envoy's response flags (the short codes of %RESPONSE_FLAGS%), in Envoy's order.
const (
	FailedLocalHealthCheck           Flags = 1 << iota // LH
	NoHealthyUpstream                                  // UH
	UpstreamRequestTimeout                             // UT
	LocalReset                                         // LR
	UpstreamRemoteReset                                // UR
	UpstreamConnectionFailure                          // UF
	UpstreamConnectionTermination                      // UC
	UpstreamOverflow                                   // UO
	NoRouteFound                                       // NR
	DelayInjected                                      // DI
	FaultInjected                                      // FI
	RateLimited                                        // RL
	UnauthorizedExternalService                        // UAEX
	RateLimitServiceError                              // RLSE
	DownstreamConnectionTermination                    // DC
	UpstreamRetryLimitExceeded                         // URX
	StreamIdleTimeout                                  // SI
	InvalidEnvoyRequestHeaders                         // IH
	DownstreamProtocolError                            // DPE
	UpstreamMaxStreamDurationReached                   // UMSDR
	ResponseFromCacheFilter                            // RFCF
	NoFilterConfigFound                                // NFCF
	DurationTimeout                                    // DT
	UpstreamProtocolError                              // UPE
	NoClusterFound                                     // NC
	OverloadManager                                    // OM
	DNSResolutionFailed                                // DF
	DropOverload                                       // DO
	DownstreamRemoteReset                              // DR
	lastFlag
)

var flagNames = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
	"DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
	"DO", "DR",
}

// String renders the flags as Envoy does: short codes joined by ",", "-" when none.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	// The common single-flag case allocates nothing.
	if f&(f-1) == 0 {
		for i := range flagNames {
			if f == 1<<i {
				return flagNames[i]
			}
		}
	}
	var b strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(name)
		}
	}
	return b.String()
}

// ParseFlags reads a rendered flag string ("UH,UF" or "-").
func ParseFlags(s string) (Flags, bool) {
	if s == "-" || s == "" {
		return 0, true
	}
	var f Flags
	for _, part := range strings.Split(s, ",") {
		found := false
		for i, name := range flagNames {
			if part == name {
				f |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	return f, true
}

// Has reports whether any of g is set.
func (f Flags) Has(g Flags) bool { return f&g != 0 }
