package demo

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
)

// loadEmbedded writes the embedded files to a folder and loads it with the same
// strict loader `skein up` uses, so a typo in the example fails here.
func loadEmbedded(t *testing.T) *model.Mesh {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := config.Load(dir)
	if err != nil {
		t.Fatalf("the demo does not load:\n%v", err)
	}
	return mesh
}

func TestDemoLoads(t *testing.T) {
	mesh := loadEmbedded(t)

	type workload struct {
		Name     string
		Replicas int
		SA       string
		Command  []string
	}
	var workloads []workload
	for _, w := range mesh.Workloads {
		workloads = append(workloads, workload{w.Name, w.Replicas, w.ServiceAccount, w.Command})
	}
	sort.Slice(workloads, func(i, j int) bool { return workloads[i].Name < workloads[j].Name })
	wantWorkloads := []workload{
		{"catalog-v1", 1, "catalog", []string{"skein", "echo", "--call", "http://inventory:8080/", "--echo-env", "COLOR"}},
		{"catalog-v2", 2, "catalog", []string{"skein", "echo", "--call", "http://inventory:8080/", "--echo-env", "COLOR"}},
		{"client", 1, "client", []string{"skein", "echo"}},
		{"frontend", 1, "frontend", []string{"skein", "echo", "--call", "http://catalog:8080/", "--propagate", "x-canary"}},
		{"inventory", 1, "inventory", []string{"skein", "echo"}},
		{"load", 1, "load", []string{"skein", "echo", "--load", "http://frontend:8080/", "--rps", "5"}},
		{"tcp-echo", 1, "tcp-echo", []string{"skein", "echo", "--tcp-echo"}},
	}
	if diff := cmp.Diff(wantWorkloads, workloads); diff != "" {
		t.Errorf("workloads (-want +got):\n%s", diff)
	}

	type port struct {
		Service  string
		Port     int
		Target   int
		Protocol model.Protocol
	}
	var ports []port
	for _, s := range mesh.Services {
		for _, p := range s.Ports {
			ports = append(ports, port{s.Name, p.Port, p.TargetPort, p.Protocol})
		}
	}
	sort.Slice(ports, func(i, j int) bool {
		if ports[i].Service != ports[j].Service {
			return ports[i].Service < ports[j].Service
		}
		return ports[i].Port < ports[j].Port
	})
	wantPorts := []port{
		{"catalog", 8080, 8080, model.ProtocolHTTP},
		{"catalog", 9090, 8080, model.ProtocolGRPC},
		{"frontend", 8080, 8080, model.ProtocolHTTP},
		{"inventory", 8080, 8080, model.ProtocolHTTP},
		{"tcp-echo", 9000, 9000, model.ProtocolTCP},
	}
	if diff := cmp.Diff(wantPorts, ports); diff != "" {
		t.Errorf("service ports (-want +got):\n%s", diff)
	}

	const catalog = "catalog.default.svc.cluster.local"
	if len(mesh.VirtualServices) != 1 {
		t.Fatalf("%d VirtualServices, want 1", len(mesh.VirtualServices))
	}
	wantRoutes := []model.HTTPRoute{
		{
			Name: "canary",
			Matches: []model.HTTPMatch{{Headers: map[string]model.StringMatch{
				"x-canary": {Kind: model.MatchExact, Value: "true"},
			}}},
			Destinations: []model.RouteDestination{{Host: catalog, Subset: "v2", Weight: 100}},
		},
		{
			Name: "split",
			Destinations: []model.RouteDestination{
				{Host: catalog, Subset: "v1", Weight: 90},
				{Host: catalog, Subset: "v2", Weight: 10},
			},
		},
	}
	if diff := cmp.Diff(wantRoutes, mesh.VirtualServices[0].HTTP); diff != "" {
		t.Errorf("catalog routes (-want +got):\n%s", diff)
	}
	if len(mesh.DestinationRules) != 1 {
		t.Fatalf("%d DestinationRules, want 1", len(mesh.DestinationRules))
	}
	wantSubsets := []model.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
	}
	if diff := cmp.Diff(wantSubsets, mesh.DestinationRules[0].Subsets); diff != "" {
		t.Errorf("catalog subsets (-want +got):\n%s", diff)
	}
}
