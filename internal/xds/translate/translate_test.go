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

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/resource"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCase is testdata/<case>/input.json: a mesh and the proxy to translate for
// (null: a generic client without SKEIN_PROXY metadata).
type goldenCase struct {
	Mesh  *model.Mesh  `json:"mesh"`
	Proxy *model.Proxy `json:"proxy"`
	// Listeners, when set, are the listener names a generic client asks for (a
	// proxyless gRPC client's dial targets): the case runs Index.ForClient.
	Listeners []string `json:"listeners,omitempty"`
}

// translate runs the case on mesh m (the case's own when nil).
func (c goldenCase) translate(m *model.Mesh) (*Resources, error) {
	if m == nil {
		m = c.Mesh
	}
	if c.Listeners != nil {
		return NewIndex(m).ForClient(c.Listeners)
	}
	return ForProxy(m, c.Proxy)
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
			res, err := c.translate(nil)
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
				{"secrets.json", res.Secrets},
			} {
				got := goldenJSON(t, f.items)
				path := filepath.Join(dir, f.file)
				if _, err := os.Stat(path); len(f.items) == 0 && os.IsNotExist(err) {
					continue // cases without mTLS have no secrets.json
				}
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
			res, err := c.translate(nil)
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
					if c.Listeners == nil { // proxyless resources are for grpc-go
						acceptedByProxy(t, resourceName(r), r)
					}
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

// acceptedByProxy decodes a resource with the skein proxy's own decoder, so a field the
// proxy does not implement (docs/XDS.md) fails here, not in a running mesh.
func acceptedByProxy(t *testing.T, where string, r types.Resource) {
	t.Helper()
	a, err := anypb.New(r)
	if err != nil {
		t.Fatal(err)
	}
	// TLS files named by DestinationRules are read by the proxy; here any path reads
	// as a valid certificate or key so the golden inputs need no real files.
	d := resource.NewDecoderWith(resource.DecoderOptions{ReadFile: goldenFile})
	switch r.(type) {
	case *listener.Listener:
		_, err = d.Listener(a)
	case *route.RouteConfiguration:
		_, err = d.RouteConfig(a)
	case *cluster.Cluster:
		_, err = d.Cluster(a)
	case *endpoint.ClusterLoadAssignment:
		_, err = d.Endpoints(a)
	case *tlsv3.Secret:
		_, err = d.Secret(a)
	default:
		t.Fatalf("%s: unexpected type %T", where, r)
	}
	if err != nil {
		t.Errorf("%s: the skein proxy rejects it: %v", where, err)
	}
}

func TestDeterministic(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			want, err := c.translate(nil)
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
			got, err := c.translate(&m)
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
			name:    "unknown role",
			mesh:    &model.Mesh{},
			proxy:   &model.Proxy{ID: "gw", Role: "waypoint"},
			wantErr: ErrUnsupportedProxy,
		},
		{
			name:    "unknown capture mode",
			mesh:    &model.Mesh{},
			proxy:   &model.Proxy{ID: "p", Capture: "ebpf"},
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
	if _, err := c.translate(nil); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(c)
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("input mutated:\n%s", diff)
	}
}

// goldenFile stands in for the files DestinationRule TLS settings name: a key for
// *key.pem, a certificate otherwise.
func goldenFile(path string) ([]byte, error) {
	if strings.HasSuffix(path, "key.pem") {
		return []byte(goldenKeyPEM), nil
	}
	return []byte(goldenCertPEM), nil
}

// A throwaway self-signed certificate and its key, for goldenFile only.
const goldenCertPEM = `-----BEGIN CERTIFICATE-----
MIIBrzCCAVWgAwIBAgIUHFP4F2mhaZNkYDtWi+46RmBJpz0wCgYIKoZIzj0EAwIw
LDEOMAwGA1UECgwFc2tlaW4xGjAYBgNVBAMMEXNrZWluIGdvbGRlbiByb290MCAX
DTI2MTEyNjE3MDk0MFoYDzIxMjYxMTAyMTcwOTQwWjAsMQ4wDAYDVQQKDAVza2Vp
bjEaMBgGA1UEAwwRc2tlaW4gZ29sZGVuIHJvb3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQSdeoRs0uJoajuqxuTUYyfQqH7qHTCjtUUialubtixQWs0Hh4xqSIL
1gvDFmTF75i+hiOJ7+nRFijS6A9tDGv/o1MwUTAdBgNVHQ4EFgQUy94Kh6/kOsYR
OfEIlYIZQWHw3A0wHwYDVR0jBBgwFoAUy94Kh6/kOsYROfEIlYIZQWHw3A0wDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAGja1tnzR9B2Bfp0kjPun2
U7QyQgpVbhf3FezMZCKAfQIhAIuIo19aypbJgQOiMjJWdcopoIzgy3OOA7C4Wc6i
LUhV
-----END CERTIFICATE-----
`

const goldenKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8cWc6NwHc0ENsjUE
LPqA9EZZ4A0FYV/hGm/VHM4neg6hRANCAAQSdeoRs0uJoajuqxuTUYyfQqH7qHTC
jtUUialubtixQWs0Hh4xqSIL1gvDFmTF75i+hiOJ7+nRFijS6A9tDGv/
-----END PRIVATE KEY-----
`
