package istio

import "testing"

func TestResolveHost(t *testing.T) {
	const suffix = "svc.cluster.local"
	tests := []struct{ host, want string }{
		{"catalog", "catalog.ns.svc.cluster.local"},
		{"catalog.other", "catalog.other.svc.cluster.local"},
		{"catalog.other.svc", "catalog.other.svc.cluster.local"},
		{"catalog.other.svc.cluster.local", "catalog.other.svc.cluster.local"},
		{"api.example.com", "api.example.com"},
		{"10.0.0.1", "10.0.0.1"},
		{"*", "*"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ResolveHost(tt.host, "ns", suffix); got != tt.want {
			t.Errorf("ResolveHost(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}
