package translate

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCase is testdata/<case>/input.json: a mesh and the proxy to translate for
// (null: a generic client without SKEIN_PROXY metadata).
type goldenCase struct {
	Mesh  *model.Mesh  `json:"mesh"`
	Proxy *model.Proxy `json:"proxy"`
}

func loadCase(t *testing.T, dir string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "input.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var c goldenCase
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return c
}

func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			res, err := ForProxy(c.Mesh, c.Proxy)
			if err != nil {
				t.Fatalf("ForProxy: %v", err)
			}
			for _, f := range []struct {
				file  string
				items []types.Resource
			}{
				{"listeners.json", res.Listeners},
				{"routes.json", res.Routes},
				{"clusters.json", res.Clusters},
				{"endpoints.json", res.Endpoints},
			} {
				got := goldenJSON(t, f.items)
				path := filepath.Join(dir, f.file)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create)", err)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
				}
			}
		})
	}
}

// goldenJSON renders resources as a JSON array of protojson objects. protojson output
// varies in whitespace on purpose, so it is re-indented with encoding/json.
func goldenJSON(t *testing.T, items []types.Resource) []byte {
	t.Helper()
	raws := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := protojson.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	out, err := json.MarshalIndent(raws, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestResourcesAreValidAndConsistent checks every golden case's output against Envoy's
// own validation rules, go-control-plane's snapshot consistency, and the field subset
// docs/XDS.md allows.
func TestResourcesAreValidAndConsistent(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			res, err := ForProxy(c.Mesh, c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			for _, items := range res.ByType() {
				for _, r := range items {
					if v, ok := r.(interface{ ValidateAll() error }); ok {
						if err := v.ValidateAll(); err != nil {
							t.Errorf("%s: %v", resourceName(r), err)
						}
					}
					checkAllowedFields(t, resourceName(r), r.ProtoReflect())
				}
			}
			byType := res.ByType()
			if len(res.Listeners) == 0 {
				// Generic clients request routes by name, no listener references them.
				delete(byType, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
			}
			snap, err := cachev3.NewSnapshot("1", byType)
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				t.Errorf("Consistent: %v", err)
			}
		})
	}
}

// allowedFields is docs/XDS.md "Fields the proxy accepts", as proto field full names.
var allowedFields = map[protoreflect.FullName]bool{}

func init() {
	for _, f := range strings.Fields(`
envoy.config.listener.v3.Listener.name envoy.config.listener.v3.Listener.address
envoy.config.listener.v3.Listener.filter_chains envoy.config.listener.v3.Listener.stat_prefix
envoy.config.core.v3.Address.socket_address envoy.config.core.v3.SocketAddress.address
envoy.config.core.v3.SocketAddress.port_value envoy.config.listener.v3.FilterChain.filters
envoy.config.listener.v3.Filter.name envoy.config.listener.v3.Filter.typed_config
envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stat_prefix
envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.codec_type
envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.rds
envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.route_config
envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_filters
envoy.extensions.filters.network.http_connection_manager.v3.Rds.config_source
envoy.extensions.filters.network.http_connection_manager.v3.Rds.route_config_name
envoy.config.core.v3.ConfigSource.ads envoy.config.core.v3.ConfigSource.resource_api_version
envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.name
envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.stat_prefix
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.cluster
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.weighted_clusters
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.clusters
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight.name
envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight.weight
envoy.config.route.v3.RouteConfiguration.name envoy.config.route.v3.RouteConfiguration.virtual_hosts
envoy.config.route.v3.VirtualHost.name envoy.config.route.v3.VirtualHost.domains
envoy.config.route.v3.VirtualHost.routes envoy.config.route.v3.Route.name
envoy.config.route.v3.Route.match envoy.config.route.v3.Route.route
envoy.config.route.v3.RouteMatch.prefix envoy.config.route.v3.RouteMatch.path
envoy.config.route.v3.RouteMatch.safe_regex envoy.config.route.v3.RouteMatch.case_sensitive
envoy.config.route.v3.RouteMatch.headers envoy.type.matcher.v3.RegexMatcher.regex
envoy.config.route.v3.HeaderMatcher.name envoy.config.route.v3.HeaderMatcher.string_match
envoy.config.route.v3.HeaderMatcher.present_match envoy.config.route.v3.HeaderMatcher.invert_match
envoy.type.matcher.v3.StringMatcher.exact envoy.type.matcher.v3.StringMatcher.prefix
envoy.type.matcher.v3.StringMatcher.suffix envoy.type.matcher.v3.StringMatcher.contains
envoy.type.matcher.v3.StringMatcher.safe_regex envoy.type.matcher.v3.StringMatcher.ignore_case
envoy.config.route.v3.RouteAction.cluster envoy.config.route.v3.RouteAction.weighted_clusters
envoy.config.route.v3.RouteAction.timeout envoy.config.route.v3.WeightedCluster.clusters
envoy.config.route.v3.WeightedCluster.ClusterWeight.name envoy.config.route.v3.WeightedCluster.ClusterWeight.weight
envoy.config.cluster.v3.Cluster.name envoy.config.cluster.v3.Cluster.type
envoy.config.cluster.v3.Cluster.eds_cluster_config envoy.config.cluster.v3.Cluster.load_assignment
envoy.config.cluster.v3.Cluster.connect_timeout envoy.config.cluster.v3.Cluster.lb_policy
envoy.config.cluster.v3.Cluster.typed_extension_protocol_options
envoy.config.cluster.v3.Cluster.EdsClusterConfig.eds_config
envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config
envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http_protocol_options
envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http2_protocol_options
envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints
envoy.config.endpoint.v3.LocalityLbEndpoints.locality envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints
envoy.config.endpoint.v3.LbEndpoint.endpoint envoy.config.endpoint.v3.LbEndpoint.health_status
envoy.config.endpoint.v3.LbEndpoint.load_balancing_weight envoy.config.endpoint.v3.Endpoint.address
`) {
		allowedFields[protoreflect.FullName(f)] = true
	}
}

// checkAllowedFields walks a message, unpacking Any, and reports fields docs/XDS.md
// does not allow. Fields of google.protobuf messages (Duration, UInt32Value) are fine.
func checkAllowedFields(t *testing.T, where string, m protoreflect.Message) {
	t.Helper()
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Errorf("%s: unpack %s: %v", where, a.GetTypeUrl(), err)
			return
		}
		checkAllowedFields(t, where, inner.ProtoReflect())
		return
	}
	if strings.HasPrefix(string(m.Descriptor().FullName()), "google.protobuf.") {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !allowedFields[fd.FullName()] {
			t.Errorf("%s: field %s is not in docs/XDS.md", where, fd.FullName())
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					checkAllowedFields(t, where, mv.Message())
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					checkAllowedFields(t, where, v.List().Get(i).Message())
				}
			}
		case fd.Message() != nil:
			checkAllowedFields(t, where, v.Message())
		}
		return true
	})
}

// TestDeterministic shuffles the order-insensitive parts of the input and expects
// identical output.
func TestDeterministic(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			want, err := ForProxy(c.Mesh, c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			m := *c.Mesh
			m.Services = slices.Clone(m.Services)
			slices.Reverse(m.Services)
			m.Endpoints = slices.Clone(m.Endpoints)
			slices.Reverse(m.Endpoints)
			m.Workloads = slices.Clone(m.Workloads)
			slices.Reverse(m.Workloads)
			got, err := ForProxy(&m, c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("output depends on input order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	twoPorts := &model.Service{
		NamespacedName: model.NamespacedName{Namespace: "default", Name: "multi"},
		Selector:       map[string]string{"app": "multi"},
		Ports:          []model.ServicePort{{Port: 80, Protocol: model.ProtocolHTTP}, {Port: 81, Protocol: model.ProtocolHTTP}},
	}
	web := &model.Service{
		NamespacedName: model.NamespacedName{Namespace: "default", Name: "web"},
		Selector:       map[string]string{"app": "web"},
		Ports:          []model.ServicePort{{Port: 80, Protocol: model.ProtocolHTTP}},
	}
	vs := func(d model.RouteDestination, m ...model.HTTPMatch) *model.VirtualService {
		return &model.VirtualService{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "web-vs"},
			Hosts:          []string{"web.default.svc.cluster.local"},
			HTTP:           []model.HTTPRoute{{Matches: m, Destinations: []model.RouteDestination{d}}},
			Source:         model.Source{File: "vs.yaml", Line: 3},
		}
	}
	sidecar := &model.Proxy{ID: "web-0.default", Workload: model.NamespacedName{Namespace: "default", Name: "web"}, IP: "127.0.0.1", OutboundHTTPPort: 15001}
	tests := []struct {
		name    string
		mesh    *model.Mesh
		proxy   *model.Proxy
		wantErr error
		wantMsg string
	}{
		{
			name:    "gateway role",
			mesh:    &model.Mesh{},
			proxy:   &model.Proxy{ID: "gw", Role: model.RoleGateway},
			wantErr: ErrUnsupportedProxy,
		},
		{
			name:    "iptables capture",
			mesh:    &model.Mesh{},
			proxy:   &model.Proxy{ID: "p", Capture: model.CaptureIPTables},
			wantErr: ErrUnsupportedProxy,
		},
		{
			name: "destination port required for multi-port service",
			mesh: &model.Mesh{Services: []*model.Service{twoPorts, web}, VirtualServices: []*model.VirtualService{
				vs(model.RouteDestination{Host: "multi.default.svc.cluster.local", Weight: 100}),
			}},
			proxy:   sidecar,
			wantErr: ErrInvalidRoute,
			wantMsg: "VirtualService web-vs.default (vs.yaml:3)",
		},
		{
			name: "unknown match kind",
			mesh: &model.Mesh{Services: []*model.Service{web}, VirtualServices: []*model.VirtualService{
				vs(model.RouteDestination{Host: "web.default.svc.cluster.local"}, model.HTTPMatch{URI: &model.StringMatch{Kind: "glob", Value: "/*"}}),
			}},
			proxy:   nil,
			wantErr: ErrInvalidRoute,
			wantMsg: `uri match kind "glob"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ForProxy(tt.mesh, tt.proxy)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

// TestDoesNotMutateInput guards purity: translation leaves the mesh as it was.
func TestDoesNotMutateInput(t *testing.T) {
	c := loadCase(t, "testdata/canary")
	before, _ := json.Marshal(c)
	if _, err := ForProxy(c.Mesh, c.Proxy); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(c)
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("input mutated:\n%s", diff)
	}
}
