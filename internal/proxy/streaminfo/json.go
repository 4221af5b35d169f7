package streaminfo

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is the JSON form of a finished Info: one access log line, one tap event.
// Field names follow Envoy's and Istio's JSON access log where they exist.
type Record struct {
	StartTime                string  `json:"start_time"`
	Proxy                    string  `json:"proxy,omitempty"`
	Direction                string  `json:"direction"`
	Listener                 string  `json:"listener"`
	Protocol                 string  `json:"protocol"`
	Method                   string  `json:"method,omitempty"`
	Path                     string  `json:"path,omitempty"`
	Authority                string  `json:"authority,omitempty"`
	UserAgent                string  `json:"user_agent,omitempty"`
	ResponseCode             int     `json:"response_code"`
	GRPCStatus               *int    `json:"grpc_status,omitempty"`
	ResponseFlags            string  `json:"response_flags"`
	BytesReceived            int64   `json:"bytes_received"`
	BytesSent                int64   `json:"bytes_sent"`
	Duration                 float64 `json:"duration"` // milliseconds
	UpstreamHost             string  `json:"upstream_host,omitempty"`
	UpstreamCluster          string  `json:"upstream_cluster,omitempty"`
	RouteName                string  `json:"route_name,omitempty"`
	VirtualHost              string  `json:"virtual_host,omitempty"`
	DestinationService       string  `json:"destination_service,omitempty"`
	XRequestID               string  `json:"x_request_id,omitempty"`
	TraceID                  string  `json:"trace_id,omitempty"`
	DownstreamRemoteAddress  string  `json:"downstream_remote_address,omitempty"`
	DownstreamPeerPrincipal  string  `json:"downstream_peer_principal,omitempty"`
	UpstreamPeerPrincipal    string  `json:"upstream_peer_principal,omitempty"`
	SourceWorkload           string  `json:"source_workload,omitempty"`
	SourceNamespace          string  `json:"source_namespace,omitempty"`
	DestinationWorkload      string  `json:"destination_workload,omitempty"`
	DestinationNamespace     string  `json:"destination_namespace,omitempty"`
	ConnectionSecurityPolicy string  `json:"connection_security_policy"`
	ResponseCodeDetails      string  `json:"response_code_details,omitempty"`
	// Audit is set when an AUDIT authorization policy matched (Envoy's access_log_hint);
	// AuditPolicy names the policy rule.
	Audit       bool   `json:"audit,omitempty"`
	AuditPolicy string `json:"audit_policy,omitempty"`
}

// AppendJSON appends the Info as one JSON object (the Record shape, no newline) and
// allocates nothing beyond growing b: the access log reuses one buffer.
func (in *Info) AppendJSON(b []byte, proxy string) []byte {
	b = append(b, `{"start_time":"`...)
	b = in.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '"')
	b = field(b, "proxy", proxy)
	b = field(b, "direction", in.Direction.String())
	b = field(b, "listener", in.Listener)
	b = field(b, "protocol", protocolField(in))
	b = field(b, "method", in.Method)
	b = field(b, "path", in.Path)
	b = field(b, "authority", in.Authority)
	b = field(b, "user_agent", in.UserAgent)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(in.ResponseCode), 10)
	if in.GRPCStatus >= 0 {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(in.GRPCStatus), 10)
	}
	b = append(b, `,"response_flags":"`...)
	b = appendFlags(b, in.Flags)
	b = append(b, `","bytes_received":`...)
	b = strconv.AppendInt(b, in.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, in.BytesSent, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, float64(in.Duration.Microseconds())/1000, 'f', -1, 64)
	b = field(b, "upstream_host", in.UpstreamHost)
	b = field(b, "upstream_cluster", in.Cluster)
	b = field(b, "route_name", in.Route)
	b = field(b, "virtual_host", in.VirtualHost)
	if in.Service != nil {
		b = field(b, "destination_service", in.Service.Host)
	}
	b = field(b, "x_request_id", in.RequestID)
	b = field(b, "trace_id", in.TraceID)
	b = field(b, "downstream_remote_address", in.DownstreamAddress)
	b = field(b, "downstream_peer_principal", in.DownstreamPrincipal)
	b = field(b, "upstream_peer_principal", in.UpstreamPrincipal)
	if p := in.DownstreamPeer; p != nil {
		b = field(b, "source_workload", p.Workload)
		b = field(b, "source_namespace", p.Namespace)
	}
	if p := in.UpstreamPeer; p != nil {
		b = field(b, "destination_workload", p.Workload)
		b = field(b, "destination_namespace", p.Namespace)
	}
	b = append(b, `,"connection_security_policy":"`...)
	b = append(b, in.Security.String()...)
	b = append(b, '"')
	b = field(b, "response_code_details", in.ResponseCodeDetails)
	if in.AuditPolicy != "" {
		b = append(b, `,"audit":true`...)
		b = field(b, "audit_policy", in.AuditPolicy)
	}
	b = append(b, '}')
	return b
}

func protocolField(in *Info) string {
	if in.Protocol == ProtocolTCP {
		return "TCP"
	}
	return in.HTTPVersion
}

func appendFlags(b []byte, f Flags) []byte {
	if f == 0 {
		return append(b, '-')
	}
	first := true
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if !first {
				b = append(b, ',')
			}
			b = append(b, name...)
			first = false
		}
	}
	return b
}

// field appends ,"name":"value" when value is not empty.
func field(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return AppendString(b, value)
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ParseStart reads a Record's start_time.
func ParseStart(s string) (time.Time, error) {
	return time.Parse("2006-01-02T15:04:05.000Z07:00", s)
}
