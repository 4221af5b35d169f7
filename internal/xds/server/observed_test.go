package server

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"skein.dev/skein/internal/model"
)

// TestObservedScope: hosts a proxy reports join its workload's scope (shared by its
// replicas), non-mesh hosts are ignored, and a host unused for the TTL leaves again.
func TestObservedScope(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond, Now: clock})
	m := testMesh(1, 1)
	m.Sidecars = []*model.Sidecar{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "frontend"},
		WorkloadSelector: map[string]string{"app": "frontend"}, EgressHosts: []string{"~/*"},
		InferFromTraffic: true, InferredTTL: time.Minute}}
	s.Update(m)
	p0, p1 := frontendProxy(), frontendProxy()
	p1.ID = "frontend-1.default"
	for _, p := range []*model.Proxy{p0, p1} {
		c := dialADS(t, addr, proxyNode(t, p))
		c.send("type.googleapis.com/envoy.config.cluster.v3.Cluster", nil, "", "", "")
		c.recv("type.googleapis.com/envoy.config.cluster.v3.Cluster")
	}
	outbound := "outbound|80||" + catalogHost
	hasCatalog := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.nodes[id].snap["type.googleapis.com/envoy.config.cluster.v3.Cluster"].byName[outbound] != nil
	}
	if hasCatalog(p0.ID) {
		t.Fatal("scoped to nothing, the proxy has the catalog cluster")
	}

	res, err := s.Observe(p0.ID, []string{"catalog", "nowhere.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Active || !slices.Equal(res.Hosts, []string{catalogHost}) {
		t.Fatalf("Observe = %+v, want active with [%s]", res, catalogHost)
	}
	if !hasCatalog(p0.ID) || !hasCatalog(p1.ID) {
		t.Fatal("after Observe, both replicas of the workload must have catalog")
	}

	// Used again after 50s: it stays past the first minute.
	mu.Lock()
	now = now.Add(50 * time.Second)
	mu.Unlock()
	if _, err := s.Observe(p1.ID, []string{"catalog.default.svc"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(50 * time.Second)
	mu.Unlock()
	s.expireObserved()
	if !hasCatalog(p0.ID) {
		t.Fatal("a host used 50s ago (TTL 1m) left the scope")
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	s.expireObserved()
	if hasCatalog(p0.ID) || hasCatalog(p1.ID) {
		t.Fatal("a host unused for longer than the TTL is still in scope")
	}

	// Without the annotation nothing is kept.
	m2 := testMesh(2, 1)
	m2.Sidecars = []*model.Sidecar{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "frontend"},
		WorkloadSelector: map[string]string{"app": "frontend"}, EgressHosts: []string{"~/*"}}}
	s.Update(m2)
	eventually(t, "push of generation 2", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.pushedGeneration == 2 })
	if res, err := s.Observe(p0.ID, []string{"catalog"}); err != nil || res.Active || len(res.Hosts) != 0 {
		t.Fatalf("Observe without inference = %+v, %v; want inactive", res, err)
	}
	if _, err := s.Observe("nobody", []string{"catalog"}); err == nil {
		t.Error("Observe from an unknown proxy succeeded")
	}
}

// TestObservedScopeSurvivesRestart: with ObservedFile, a new server starts with the
// hosts the previous one had inferred.
func TestObservedScopeSurvivesRestart(t *testing.T) {
	file := t.TempDir() + "/observed-scope.json"
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond, ObservedFile: file})
	m := testMesh(1, 1)
	m.Sidecars = []*model.Sidecar{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "frontend"},
		WorkloadSelector: map[string]string{"app": "frontend"}, EgressHosts: []string{"~/*"},
		InferFromTraffic: true, InferredTTL: time.Hour}}
	s.Update(m)
	p := frontendProxy()
	c := dialADS(t, addr, proxyNode(t, p))
	c.send("type.googleapis.com/envoy.config.cluster.v3.Cluster", nil, "", "", "")
	c.recv("type.googleapis.com/envoy.config.cluster.v3.Cluster")
	if _, err := s.Observe(p.ID, []string{"catalog"}); err != nil {
		t.Fatal(err)
	}

	s2, addr2 := startServer(t, Options{Debounce: 5 * time.Millisecond, ObservedFile: file})
	s2.Update(m)
	c2 := dialADS(t, addr2, proxyNode(t, p))
	c2.send("type.googleapis.com/envoy.config.cluster.v3.Cluster", nil, "", "", "")
	cds := c2.recv("type.googleapis.com/envoy.config.cluster.v3.Cluster")
	found := false
	for _, a := range cds.GetResources() {
		if strings.Contains(string(a.GetValue()), "outbound|80||"+catalogHost) {
			found = true
		}
	}
	if !found {
		t.Fatal("after a restart with the same ObservedFile, the proxy's clusters lack catalog")
	}
}
