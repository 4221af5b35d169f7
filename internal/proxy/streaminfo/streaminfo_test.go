package streaminfo

import (
	"encoding/json"
	"math/bits"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFlagNamesCoverEveryFlag(t *testing.T) {
	if got, want := len(flagNames), bits.TrailingZeros32(uint32(lastFlag)); got != want {
		t.Fatalf("%d flag names for %d flags", got, want)
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		flags Flags
		want  string
	}{
		{0, "-"},
		{NoHealthyUpstream, "UH"},
		{NoRouteFound, "NR"},
		{UpstreamConnectionFailure | UpstreamRetryLimitExceeded, "UF,URX"},
		{NoHealthyUpstream | DownstreamConnectionTermination | UnauthorizedExternalService, "UH,UAEX,DC"},
		{FaultInjected | DelayInjected | RateLimited, "DI,FI,RL"},
	}
	for _, tc := range tests {
		if got := tc.flags.String(); got != tc.want {
			t.Errorf("%b: got %q, want %q", tc.flags, got, tc.want)
		}
		if got := string(appendFlags(nil, tc.flags)); got != tc.want {
			t.Errorf("appendFlags %b: got %q, want %q", tc.flags, got, tc.want)
		}
		back, ok := ParseFlags(tc.want)
		if !ok || back != tc.flags {
			t.Errorf("ParseFlags(%q) = %b, %v", tc.want, back, ok)
		}
	}
	if _, ok := ParseFlags("UH,XX"); ok {
		t.Errorf("ParseFlags accepted an unknown flag")
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 0, 0, 123e6, time.UTC)
	in := &Info{
		Start: start, Duration: 1500 * time.Microsecond, Listener: "outbound_http_proxy", Direction: Outbound,
		Protocol: ProtocolHTTP, Method: "GET", Path: "/a?q=\"x\"&y=<z>", Authority: "catalog:8080", UserAgent: "ua\x01\xff",
		HTTPVersion: "HTTP/1.1", Route: "split", Cluster: "outbound|8080|v1|catalog.default.svc.cluster.local",
		UpstreamHost: "127.0.0.1:1", Service: &Service{Host: "catalog.default.svc.cluster.local"},
		BytesReceived: 3, BytesSent: 4, ResponseCode: 503, GRPCStatus: 14, Flags: NoHealthyUpstream | UpstreamConnectionFailure,
		DownstreamPeer: &Peer{Workload: "frontend", Namespace: "default"}, UpstreamPeer: &Peer{Workload: "catalog-v1", Namespace: "default"},
		RequestID: "rid", TraceID: "tid", Security: SecurityMutualTLS, DownstreamPrincipal: "spiffe://cluster.local/ns/default/sa/frontend",
		ResponseCodeDetails: "rbac_access_denied_matched_policy[none]", AuditPolicy: "ns[default]-policy[audit]-rule[0]",
	}
	b := in.AppendJSON(nil, "frontend-0.default")
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	var got Record
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	grpc := 14
	want := Record{
		StartTime: "2026-11-26T10:00:00.123Z", Proxy: "frontend-0.default", Direction: "outbound", Listener: "outbound_http_proxy",
		Protocol: "HTTP/1.1", Method: "GET", Path: "/a?q=\"x\"&y=<z>", Authority: "catalog:8080", UserAgent: "ua\x01\ufffd",
		ResponseCode: 503, GRPCStatus: &grpc, ResponseFlags: "UH,UF", BytesReceived: 3, BytesSent: 4, Duration: 1.5,
		UpstreamHost: "127.0.0.1:1", UpstreamCluster: "outbound|8080|v1|catalog.default.svc.cluster.local", RouteName: "split",
		DestinationService: "catalog.default.svc.cluster.local", XRequestID: "rid", TraceID: "tid",
		DownstreamPeerPrincipal: "spiffe://cluster.local/ns/default/sa/frontend", SourceWorkload: "frontend", SourceNamespace: "default",
		DestinationWorkload: "catalog-v1", DestinationNamespace: "default", ConnectionSecurityPolicy: "mutual_tls",
		ResponseCodeDetails: "rbac_access_denied_matched_policy[none]", Audit: true, AuditPolicy: "ns[default]-policy[audit]-rule[0]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if allocs := testing.AllocsPerRun(100, func() { b = in.AppendJSON(b[:0], "p") }); allocs != 0 {
		t.Errorf("AppendJSON into a large enough buffer allocates %v times", allocs)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x1f", "bad\xff\xfe", "ünï", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var std string
		_ = json.Unmarshal(want, &std)
		if back != std {
			t.Fatalf("%q: decoded %q, encoding/json gives %q", s, back, std)
		}
	})
}
