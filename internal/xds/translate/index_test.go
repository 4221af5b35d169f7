package translate

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"skein.dev/skein/internal/model"
)

// TestIndexSharedAcrossProxies: one Index translating many proxies (as the control plane
// does) gives each proxy exactly what a fresh ForProxy gives it, whatever was
// translated before with the same Index (other namespaces, generic clients, other
// scopes), and proxies share the proxy-independent resources.
func TestIndexSharedAcrossProxies(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			idx := NewIndex(c.Mesh)
			// Warm the caches with proxies of other namespaces and a generic client.
			for _, ns := range []string{"default", "shop", "elsewhere"} {
				if c.Proxy == nil {
					break
				}
				other := *c.Proxy
				other.ID, other.Workload = "other-0."+ns, model.NamespacedName{Namespace: ns, Name: "other"}
				other.Labels = map[string]string{"app": "other"}
				if _, err := idx.ForProxy(&other); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := idx.ForProxy(nil); err != nil {
				t.Fatal(err)
			}
			got, err := idx.ForProxy(c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ForProxy(c.Mesh, c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("shared index (-fresh +shared):\n%s", diff)
			}
			again, _ := idx.ForProxy(c.Proxy)
			for i := range got.Clusters {
				if got.Clusters[i] != again.Clusters[i] && got.Clusters[i].(interface{ GetName() string }).GetName()[:8] == "outbound" {
					t.Errorf("outbound cluster %d not shared between translations", i)
				}
			}
		})
	}
}
