package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/model"
)

const svc = `apiVersion: v1
kind: Service
metadata: {name: catalog}
spec:
  ports: [{name: http, port: 80}]
`

func TestLoadBytesErrors(t *testing.T) {
	tests := []struct {
		name, input string
		want        []string
	}{
		{
			name:  "unknown field",
			input: svc + "  selectr: {app: x}\n",
			want:  []string{`f.yaml:6:3: Service default/catalog: spec.selectr: unknown field "selectr" (did you mean "selector"?)`},
		},
		{
			name:  "string for int",
			input: strings.Replace(svc, "port: 80", "port: eighty", 1),
			want:  []string{`f.yaml:5:30: Service default/catalog: spec.ports[0].port: expected an integer, got string "eighty"`},
		},
		{
			name:  "missing name",
			input: "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\nspec: {ports: [{port: 80}]}\n",
			want:  []string{`f.yaml:3:11: Service: metadata.name: name is required`},
		},
		{
			name:  "unknown kind",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
			want:  []string{`f.yaml:2:7: kind: unsupported kind "Pod" of apiVersion "v1": skein reads v1 Service, ` + supportedKinds},
		},
		{
			name: "weights",
			input: svc + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - route:
    - destination: {host: catalog}
      weight: 50
    - destination: {host: catalog}
`,
			want: []string{`f.yaml:14:5: VirtualService default/catalog: spec.http[0].route: weights of the 2 destinations add up to 50, they must add up to 100 (an unset weight is 0)`},
		},
		{
			name: "unsupported field",
			input: svc + `---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - route: [{destination: {host: catalog}}]
    directResponse: {status: 200}
`,
			want: []string{`f.yaml:14:5: VirtualService default/catalog: spec.http[0].directResponse: not supported yet by skein`},
		},
		{
			name:  "subset without rule",
			input: svc + "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: c}\nspec:\n  hosts: [catalog]\n  tcp: [{route: [{destination: {host: catalog, subset: v1}}]}]\n",
			want:  []string{`f.yaml:12:56: VirtualService default/c: spec.tcp[0].route[0].destination.subset: subset "v1": no DestinationRule defines subsets for host "catalog.default.svc.cluster.local"`},
		},
		{
			name:  "rule for unknown host",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: nope}\n",
			want:  []string{`f.yaml:4:14: DestinationRule default/d: spec.host: host "nope" (nope.default.svc.cluster.local) is not a known Service`},
		},
		{
			name:  "enum value",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: catalog, trafficPolicy: {loadBalancer: {simple: FASTEST}}}\n",
			want:  []string{`f.yaml:4:62: DestinationRule default/d: spec.trafficPolicy.loadBalancer.simple: expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST, got string "FASTEST"`},
		},
		{
			name:  "proto name and json name twice",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: catalog, traffic_policy: {}, trafficPolicy: {}}\n",
			want:  []string{`f.yaml:4:43: DestinationRule default/d: spec.trafficPolicy: field set twice (as "traffic_policy" and "trafficPolicy")`},
		},
		{
			name:  "duplicate key",
			input: "apiVersion: v1\nkind: Service\nkind: Service\n",
			want:  []string{`f.yaml:3:1: kind: duplicate key "kind" (first at line 2)`},
		},
		{
			name:  "alias",
			input: "apiVersion: v1\nkind: Service\nmetadata: &m {name: a}\nspec: *m\n",
			want: []string{
				`f.yaml:3:11: metadata: YAML anchors (&m) are not supported: write the value out`,
				`f.yaml:4:7: spec: YAML aliases (*m) are not supported: write the value out`,
			},
		},
		{
			name:  "syntax error",
			input: svc + "---\nkind: [\n",
			want:  []string{`f.yaml:7:1: invalid YAML: did not find expected node content`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("f.yaml", []byte(tt.input))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("LoadBytes() error = %v, want an ErrorList", err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadDefaults(t *testing.T) {
	input := svc + `---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: w}
spec: {command: [app]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default}
spec:
  host: catalog.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {v: "1"}, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}]
`
	mesh, err := LoadBytes("f.yaml", []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	want := &model.Mesh{
		DomainSuffix: model.DefaultDomainSuffix,
		Services: []*model.Service{{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "catalog"},
			Ports:          []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
			VIP:            "240.240.242.47", // hash of default/catalog in model.VIPRange
			Source:         model.Source{File: "f.yaml", Line: 1},
		}},
		Workloads: []*model.Workload{{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "w"},
			ServiceAccount: "default", Replicas: 1, Command: []string{"app"},
			Source: model.Source{File: "f.yaml", Line: 7},
		}},
		DestinationRules: []*model.DestinationRule{{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "d"},
			Host:           "catalog.default.svc.cluster.local",
			TrafficPolicy:  &model.TrafficPolicy{LoadBalancer: &model.LoadBalancerSettings{Simple: model.LBRoundRobin}},
			Subsets: []model.Subset{{Name: "v1", Labels: map[string]string{"v": "1"},
				TrafficPolicy: &model.TrafficPolicy{LoadBalancer: &model.LoadBalancerSettings{Simple: model.LBLeastRequest}}}},
			Source: model.Source{File: "f.yaml", Line: 12},
		}},
	}
	if diff := cmp.Diff(want, mesh); diff != "" {
		t.Errorf("mesh mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", svc)
	write("b.yml", strings.ReplaceAll(svc, "catalog", "reviews"))
	write(".c.yaml", "broken: [")
	mesh, err := Load(dir, filepath.Join(dir, "a.yaml")) // a.yaml twice: read once
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range mesh.Services {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"catalog", "reviews"}, names); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	_, err = Load(filepath.Join(dir, "missing"))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "no such file") {
		t.Errorf("Load(missing) = %v, want one no-such-file error", err)
	}
}

func FuzzLoadBytes(f *testing.F) {
	for _, dir := range []string{"smoke", "folder/sub", "errors", "semantic", "unsupported", "references", "security", "security-errors", "sidecar", "sidecar-errors", "serviceentry", "serviceentry-errors", "routing", "routing-errors", "routing-references", "trafficpolicy", "trafficpolicy-errors", "gateway", "gateway-istio", "gateway-errors"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.y*ml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(svc))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mesh, err := LoadBytes("fuzz.yaml", data)
		if (mesh == nil) == (err == nil) {
			t.Fatalf("LoadBytes returned mesh=%v err=%v: want exactly one", mesh, err)
		}
		if err != nil {
			_ = err.Error()
		}
	})
}
