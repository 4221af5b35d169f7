package config

import (
	"net/netip"
	"os"
	"testing"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/translate"
)

// FuzzServiceEntry loads arbitrary documents; whatever loads must hold the adapter's
// promises (hosts as declared, ports in range, STATIC endpoints are IPs, DNS_ROUND_ROBIN
// at most one endpoint) and must translate for a sidecar and a generic client without
// panicking.
func FuzzServiceEntry(f *testing.F) {
	for _, file := range []string{"testdata/serviceentry/input.yaml", "testdata/serviceentry-errors/input.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.b.c], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS_ROUND_ROBIN, endpoints: [{address: localhost}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mesh, err := LoadBytes("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, s := range mesh.Services {
			e := s.Entry
			if e == nil {
				continue
			}
			if s.Host == "" || s.Host != s.Name || len(s.Ports) == 0 {
				t.Fatalf("ServiceEntry service %+v", s)
			}
			for _, p := range s.Ports {
				if p.Port < 1 || p.Port > 65535 || p.Name == "" {
					t.Fatalf("port %+v accepted", p)
				}
			}
			for _, ep := range e.Endpoints {
				if _, err := netip.ParseAddr(ep.Address); err != nil && e.Resolution == model.ResolutionStatic {
					t.Fatalf("STATIC endpoint %q is not an IP", ep.Address)
				}
			}
			if e.Resolution == model.ResolutionDNSRoundRobin && len(e.Endpoints) > 1 {
				t.Fatalf("DNS_ROUND_ROBIN with %d endpoints", len(e.Endpoints))
			}
		}
		proxy := &model.Proxy{ID: "c-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "c"}, Capture: model.CaptureIPTables, IP: "100.64.0.2"}
		for _, p := range []*model.Proxy{nil, proxy} {
			_, _ = translate.ForProxy(mesh, p)
		}
	})
}
