package resource

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// goldenRoutes reads the translator's golden RDS resources of the route-* cases.
func goldenRoutes(t testing.TB) []*routev3.RouteConfiguration {
	files, _ := filepath.Glob("../../xds/translate/testdata/route-*/routes.json")
	if len(files) == 0 {
		t.Fatal("no golden route cases")
	}
	var out []*routev3.RouteConfiguration
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(data, &raws); err != nil {
			t.Fatal(err)
		}
		for _, r := range raws {
			rc := &routev3.RouteConfiguration{}
			if err := protojson.Unmarshal(r, rc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, rc)
		}
	}
	return out
}

func routeNamed(t *testing.T, rcs []*routev3.RouteConfiguration, name string) Route {
	t.Helper()
	d := NewDecoder()
	for _, pb := range rcs {
		rc, err := d.RouteConfig(mustAny(t, pb))
		if err != nil {
			t.Fatal(err)
		}
		for _, vh := range rc.Resource.VirtualHosts {
			for _, r := range vh.Routes {
				if r.Name == name {
					return r
				}
			}
		}
	}
	t.Fatalf("no route %q", name)
	return Route{}
}

func TestDecodeRouteActions(t *testing.T) {
	rcs := goldenRoutes(t)
	if r := routeNamed(t, rcs, "moved"); r.Redirect == nil || *r.Redirect != (Redirect{Scheme: "https", Host: "other.example", Port: 9443, Path: "/there", Code: 308}) || len(r.Clusters) != 0 {
		t.Errorf("moved: %+v", r.Redirect)
	}
	if r := routeNamed(t, rcs, "prefix"); !r.Rewrite.HasPrefix || r.Rewrite.Prefix != "/v2/" {
		t.Errorf("prefix rewrite: %+v", r.Rewrite)
	}
	if r := routeNamed(t, rcs, "regex"); r.Rewrite.Regex == nil || r.Rewrite.Substitution != "/profile/${1}" {
		t.Errorf("regex rewrite: %+v", r.Rewrite)
	}
	if r := routeNamed(t, rcs, "authority"); r.Rewrite.Host != "backend.internal" {
		t.Errorf("authority rewrite: %+v", r.Rewrite)
	}
	r := routeNamed(t, rcs, "route-level")
	if len(r.RequestHeaders.Add) != 3 || r.RequestHeaders.Remove[0] != "X-Remove" || r.RequestHeaders.Add[0].Action != OverwriteIfExistsOrAdd || r.ResponseHeaders.Remove[0] != "Server" {
		t.Errorf("route-level headers: %+v %+v", r.RequestHeaders, r.ResponseHeaders)
	}
	r = routeNamed(t, rcs, "per-destination")
	if len(r.Clusters) != 2 || r.Clusters[1].RequestHeaders.Add[0].Value != "v2" || r.Clusters[0].ResponseHeaders.Add[0].Action != AppendIfExistsOrAdd {
		t.Errorf("per-destination headers: %+v", r.Clusters)
	}
	r = routeNamed(t, rcs, "explicit")
	if p := r.Retry; p == nil || p.NumRetries != 3 || p.PerTryTimeout != 200*time.Millisecond || p.On != Retry5xx|RetryGatewayError|RetryRetriableStatusCodes ||
		len(p.StatusCodes) != 1 || p.StatusCodes[0] != 418 || p.PreviousHosts || p.HostSelectionAttempts != 5 || p.BaseInterval != 100*time.Millisecond || p.MaxInterval != time.Second {
		t.Errorf("explicit retries: %+v", r.Retry)
	}
	if r := routeNamed(t, rcs, "default"); r.Retry == nil || !r.Retry.PreviousHosts || r.Retry.BaseInterval != 25*time.Millisecond || r.Retry.MaxInterval != 250*time.Millisecond {
		t.Errorf("default retries: %+v", r.Retry)
	}
	if r := routeNamed(t, rcs, "off"); r.Retry != nil {
		t.Errorf("retries off: %+v", r.Retry)
	}
	if r := routeNamed(t, rcs, "budget"); r.Retry == nil || r.Retry.Budget == nil || *r.Retry.Budget != (RetryBudget{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second}) {
		t.Errorf("budget: %+v", r.Retry)
	}
	if r := routeNamed(t, rcs, "delay"); r.Fault == nil || !r.Fault.HasDelay || r.Fault.Delay != 300*time.Millisecond || r.Fault.DelayNumerator != 125000 || r.Fault.DelayDenom != 1000000 || r.Fault.HasAbort {
		t.Errorf("delay: %+v", r.Fault)
	}
	if r := routeNamed(t, rcs, "abort-grpc"); r.Fault == nil || r.Fault.AbortGRPC != 14 || r.Fault.AbortHTTP != 0 || r.Fault.AbortNumerator != 500000 {
		t.Errorf("abort-grpc: %+v", r.Fault)
	}
	r = routeNamed(t, rcs, "mirror")
	if len(r.Mirrors) != 2 || r.Mirrors[0].Numerator != 1000000 || r.Mirrors[1].Numerator != 5000 || !strings.HasPrefix(r.Mirrors[1].Cluster, "outbound|8080|v2|") {
		t.Errorf("mirrors: %+v", r.Mirrors)
	}
	r = routeNamed(t, rcs, "cors")
	if c := r.CORS; c == nil || len(c.AllowOrigins) != 3 || c.AllowMethods != "GET,POST" || c.MaxAge != "3600" || !c.AllowCredentials || !c.AllowOrigins[2].Match("https://abc.example") || c.AllowOrigins[2].Match("https://abc.example.evil") {
		t.Errorf("cors: %+v", r.CORS)
	}
	r = routeNamed(t, rcs, "query")
	if len(r.Match.Query) != 3 || !r.Match.Query[0].Present || !r.Match.Query[1].Match.Match("42") || r.Match.Query[1].Match.Match("4x") {
		t.Errorf("query: %+v", r.Match.Query)
	}
}

func TestDecodeRouteActionErrors(t *testing.T) {
	base := func() *routev3.Route {
		return &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}}
	}
	anyOf := func(m proto.Message) *anypb.Any { a, _ := anypb.New(m); return a }
	tests := []struct {
		name string
		edit func(*routev3.Route)
		want string
	}{
		{"unknown retry_on", func(r *routev3.Route) {
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,envoy-ratelimited"}
		}, `unsupported condition "envoy-ratelimited"`},
		{"bad status code", func(r *routev3.Route) {
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetriableStatusCodes: []uint32{42}}
		}, "not an HTTP status"},
		{"too many retries", func(r *routev3.Route) {
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(1000)}
		}, "at most 100"},
		{"back-off max below base", func(r *routev3.Route) {
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Second), MaxInterval: durationpb.New(time.Millisecond)}}
		}, "max_interval"},
		{"pseudo-header set", func(r *routev3.Route) {
			r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ":path", Value: "/"}}}
		}, `cannot set header ":path"`},
		{"remove host", func(r *routev3.Route) { r.RequestHeadersToRemove = []string{"Host"} }, `cannot remove header "Host"`},
		{"header value with newline", func(r *routev3.Route) {
			r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x", Value: "a\r\nb"}}}
		}, "invalid characters"},
		{"relative redirect path", func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "relative"}}}
		}, "must start with /"},
		{"fault abort status", func(r *routev3.Route) {
			r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": anyOf(&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 99}}})}
		}, "out of [200, 599]"},
		{"fault delay without fixed", func(r *routev3.Route) {
			r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": anyOf(&faultv3.HTTPFault{Delay: &faultcommon.FaultDelay{Percentage: &typev3.FractionalPercent{Numerator: 1}}})}
		}, "fixed_delay: required"},
		{"unknown per-route config", func(r *routev3.Route) {
			r.TypedPerFilterConfig = map[string]*anypb.Any{"x": anyOf(&routev3.Route{})}
		}, "unsupported"},
	}
	d := NewDecoder()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.edit(r)
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{r}}}}
			_, err := d.RouteConfig(mustAny(t, rc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// FuzzRouteConfig mutates the translator's golden route configurations: decoding must
// never panic.
func FuzzRouteConfig(f *testing.F) {
	for _, rc := range goldenRoutes(f) {
		b, err := proto.Marshal(rc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = d.RouteConfig(&anypb.Any{TypeUrl: RouteType, Value: b})
	})
}
