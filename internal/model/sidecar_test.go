package model

import "testing"

func TestSidecarImports(t *testing.T) {
	sc := &Sidecar{NamespacedName: NamespacedName{Namespace: "shop", Name: "default"},
		EgressHosts: []string{"./*", "payments/*.payments.svc.cluster.local", "*/ledger.finance.svc.cluster.local", "~/*"}}
	tests := []struct {
		host, ns string
		want     bool
	}{
		{"catalog.shop.svc.cluster.local", "shop", true},
		{"api.payments.svc.cluster.local", "payments", true},
		{"payments.svc.cluster.local", "payments", false}, // "*." needs one more label
		{"api.payments.svc.cluster.local", "other", false},
		{"ledger.finance.svc.cluster.local", "finance", true},
		{"audit.finance.svc.cluster.local", "finance", false},
	}
	for _, tc := range tests {
		if got := sc.Imports(tc.host, tc.ns); got != tc.want {
			t.Errorf("Imports(%s, %s) = %v, want %v", tc.host, tc.ns, got, tc.want)
		}
	}
}

func TestSidecarFor(t *testing.T) {
	root := &Sidecar{NamespacedName: NamespacedName{Namespace: RootNamespace, Name: "default"}}
	nsDefault := &Sidecar{NamespacedName: NamespacedName{Namespace: "shop", Name: "default"}}
	nsDefault2 := &Sidecar{NamespacedName: NamespacedName{Namespace: "shop", Name: "later"}}
	selected := &Sidecar{NamespacedName: NamespacedName{Namespace: "shop", Name: "frontend"}, WorkloadSelector: map[string]string{"app": "frontend"}}
	otherNS := &Sidecar{NamespacedName: NamespacedName{Namespace: "other", Name: "frontend"}, WorkloadSelector: map[string]string{"app": "frontend"}}
	m := &Mesh{Sidecars: []*Sidecar{root, otherNS, nsDefault, selected, nsDefault2}}
	tests := []struct {
		name   string
		ns     string
		labels map[string]string
		want   *Sidecar
	}{
		{"selector wins over namespace default", "shop", map[string]string{"app": "frontend"}, selected},
		{"first namespace default", "shop", map[string]string{"app": "cart"}, nsDefault},
		{"root default", "payments", map[string]string{"app": "frontend"}, root},
		{"none", "payments", nil, root},
	}
	for _, tc := range tests {
		if got := m.SidecarFor(tc.ns, tc.labels); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := (&Mesh{}).SidecarFor("shop", nil); got != nil {
		t.Errorf("no Sidecars: got %v, want nil", got)
	}
}
