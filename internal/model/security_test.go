package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func pa(ns, name string, sel map[string]string, mode MTLSMode, ports map[int]MTLSMode) *PeerAuthentication {
	return &PeerAuthentication{NamespacedName: NamespacedName{Namespace: ns, Name: name}, Selector: sel, Mode: mode, PortLevel: ports}
}

func TestEffectivePeerAuthentication(t *testing.T) {
	app := map[string]string{"app": "web"}
	tests := []struct {
		name     string
		root     string
		policies []*PeerAuthentication
		ns       string
		port     int
		want     MTLSMode
	}{
		{name: "no policy is permissive", ns: "default", port: 80, want: MTLSPermissive},
		{name: "mesh strict", policies: []*PeerAuthentication{pa("istio-system", "default", nil, MTLSStrict, nil)}, ns: "default", port: 80, want: MTLSStrict},
		{name: "namespace over mesh", policies: []*PeerAuthentication{
			pa("istio-system", "default", nil, MTLSStrict, nil), pa("default", "ns", nil, MTLSDisable, nil)}, ns: "default", port: 80, want: MTLSDisable},
		{name: "other namespace policy does not apply", policies: []*PeerAuthentication{
			pa("other", "ns", nil, MTLSStrict, nil)}, ns: "default", port: 80, want: MTLSPermissive},
		{name: "workload over namespace", policies: []*PeerAuthentication{
			pa("default", "ns", nil, MTLSStrict, nil), pa("default", "w", app, MTLSPermissive, nil)}, ns: "default", port: 80, want: MTLSPermissive},
		{name: "workload selector not matching", policies: []*PeerAuthentication{
			pa("default", "ns", nil, MTLSStrict, nil), pa("default", "w", map[string]string{"app": "db"}, MTLSDisable, nil)}, ns: "default", port: 80, want: MTLSStrict},
		{name: "workload unset inherits namespace", policies: []*PeerAuthentication{
			pa("default", "ns", nil, MTLSStrict, nil), pa("default", "w", app, MTLSUnset, nil)}, ns: "default", port: 80, want: MTLSStrict},
		{name: "namespace unset inherits mesh", policies: []*PeerAuthentication{
			pa("istio-system", "m", nil, MTLSDisable, nil), pa("default", "ns", nil, MTLSUnset, nil)}, ns: "default", port: 80, want: MTLSDisable},
		{name: "port level over workload", policies: []*PeerAuthentication{
			pa("default", "w", app, MTLSStrict, map[int]MTLSMode{8080: MTLSDisable})}, ns: "default", port: 8080, want: MTLSDisable},
		{name: "port level other port", policies: []*PeerAuthentication{
			pa("default", "w", app, MTLSStrict, map[int]MTLSMode{8080: MTLSDisable})}, ns: "default", port: 9090, want: MTLSStrict},
		{name: "port level unset inherits", policies: []*PeerAuthentication{
			pa("default", "ns", nil, MTLSDisable, nil), pa("default", "w", app, MTLSUnset, map[int]MTLSMode{8080: MTLSUnset})}, ns: "default", port: 8080, want: MTLSDisable},
		{name: "oldest workload policy wins", policies: []*PeerAuthentication{
			pa("default", "a", app, MTLSStrict, nil), pa("default", "b", app, MTLSDisable, nil)}, ns: "default", port: 80, want: MTLSStrict},
		{name: "oldest namespace policy wins", policies: []*PeerAuthentication{
			pa("default", "a", nil, MTLSDisable, nil), pa("default", "b", nil, MTLSStrict, nil)}, ns: "default", port: 80, want: MTLSDisable},
		{name: "configured root namespace", root: "mesh-root", policies: []*PeerAuthentication{
			pa("istio-system", "x", nil, MTLSDisable, nil), pa("mesh-root", "m", nil, MTLSStrict, nil)}, ns: "default", port: 80, want: MTLSStrict},
		{name: "root namespace workload policy applies only there", policies: []*PeerAuthentication{
			pa("istio-system", "w", app, MTLSDisable, nil)}, ns: "default", port: 80, want: MTLSPermissive},
		{name: "workload in root namespace gets mesh policy", policies: []*PeerAuthentication{
			pa("istio-system", "m", nil, MTLSStrict, nil)}, ns: "istio-system", port: 80, want: MTLSStrict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Mesh{RootNamespace: tt.root, PeerAuthentications: tt.policies}
			if got := m.EffectivePeerAuthentication(tt.ns, app, tt.port); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientTLSFor(t *testing.T) {
	mutual := &ClientTLS{Mode: TLSIstioMutual}
	disable := &ClientTLS{Mode: TLSDisable}
	simple := &ClientTLS{Mode: TLSSimple, SNI: "x"}
	dr := &DestinationRule{
		TrafficPolicy: &TrafficPolicy{TLS: mutual, PortLevel: []PortTrafficPolicy{{Port: 9000, TLS: disable}}},
		Subsets: []Subset{
			{Name: "plain"},
			{Name: "ext", TrafficPolicy: &TrafficPolicy{TLS: simple}},
			{Name: "ext-port", TrafficPolicy: &TrafficPolicy{PortLevel: []PortTrafficPolicy{{Port: 8080, TLS: simple}}}},
		},
	}
	tests := []struct {
		subset string
		port   int
		want   *ClientTLS
	}{
		{"", 8080, mutual},
		{"", 9000, disable},
		{"plain", 9000, disable},
		{"plain", 8080, mutual},
		{"ext", 9000, simple},
		{"ext-port", 8080, simple},
		{"ext-port", 9000, disable},
		{"missing", 8080, mutual},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, dr.ClientTLSFor(tt.subset, tt.port)); diff != "" {
			t.Errorf("subset %q port %d (-want +got):\n%s", tt.subset, tt.port, diff)
		}
	}
	var none *DestinationRule
	if got := none.ClientTLSFor("", 80); got != nil {
		t.Errorf("nil rule: got %+v", got)
	}
}
