package resource

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func validListener(t testing.TB) *listenerv3.Listener {
	router := &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "l",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r", ConfigSource: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3,
		}}},
		HttpFilters: []*hcmv3.HttpFilter{router},
	}
	return &listenerv3.Listener{
		Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15001},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}},
	}
}

func TestListenerValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(t *testing.T, l *listenerv3.Listener)
		wantErr string
	}{
		{name: "valid"},
		{name: "unsupported listener field", mutate: func(t *testing.T, l *listenerv3.Listener) {
			l.UseOriginalDst = wrapperspb.Bool(true)
		}, wantErr: "unsupported field envoy.config.listener.v3.Listener.use_original_dst"},
		{name: "unsupported field inside typed_config", mutate: func(t *testing.T, l *listenerv3.Listener) {
			hcm := &hcmv3.HttpConnectionManager{}
			_ = l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
			hcm.GenerateRequestId = wrapperspb.Bool(false)
			l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
		}, wantErr: "unsupported field envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.generate_request_id"},
		{name: "router twice", mutate: func(t *testing.T, l *listenerv3.Listener) {
			hcm := &hcmv3.HttpConnectionManager{}
			_ = l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
			hcm.HttpFilters = append(hcm.HttpFilters, hcm.HttpFilters[0])
			l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
		}, wantErr: "http_filters[0].typed_config: unsupported filter type \"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\" (the router must be last)"},
		{name: "missing address", mutate: func(t *testing.T, l *listenerv3.Listener) { l.Address = nil }, wantErr: "socket_address: missing"},
	}
	d := NewDecoder()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := validListener(t)
			if tc.mutate != nil {
				tc.mutate(t, l)
			}
			got, err := d.Listener(mustAny(t, l))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Resource.Address != "127.0.0.1:15001" || got.Resource.FilterChains[0].HTTP.RDSName != "r" {
					t.Fatalf("decoded %+v", got.Resource)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestRouteAndClusterValidation(t *testing.T) {
	d := NewDecoder()
	badRegex := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
	}}}}}
	if _, err := d.RouteConfig(mustAny(t, badRegex)); err != nil {
		// An empty regex is valid RE2 (matches only ""), so this must pass.
		t.Fatalf("empty regex: %v", err)
	}
	retries := proto.Clone(badRegex).(*routev3.RouteConfiguration)
	retries.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", RetriableHeaders: []*routev3.HeaderMatcher{{Name: "x"}}}
	if _, err := d.RouteConfig(mustAny(t, retries)); err == nil || !strings.Contains(err.Error(), "envoy.config.route.v3.RetryPolicy.retriable_headers") {
		t.Fatalf("retry_policy: %v", err)
	}
	ring := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		LbPolicy:         clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG}
	if _, err := d.Cluster(mustAny(t, ring)); err == nil || !strings.Contains(err.Error(), "lb_policy LOAD_BALANCING_POLICY_CONFIG unsupported") {
		t.Fatalf("load_balancing_policy config: %v", err)
	}
}

// FuzzListener feeds arbitrary bytes as a Listener: decoding and validation must never
// panic, whatever the control plane (or an attacker on the stream) sends.
func FuzzListener(f *testing.F) {
	seed, _ := proto.Marshal(validListener(f))
	f.Add(seed)
	f.Add([]byte{})
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []string{ListenerType, RouteType, ClusterType, EndpointType} {
			a := &anypb.Any{TypeUrl: typ, Value: b}
			_, _ = d.Listener(a)
			_, _ = d.RouteConfig(a)
			_, _ = d.Cluster(a)
			_, _ = d.Endpoints(a)
		}
	})
}
