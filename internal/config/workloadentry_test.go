package config

import (
	"net/netip"
	"os"
	"testing"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/translate"
)

// FuzzWorkloadEntry loads arbitrary documents; whatever loads must hold the adapter's
// promises (an IP address, labels, ports in range), give endpoints bound to ports of
// services that select the entry, and translate for a sidecar and a proxyless client
// without panicking.
func FuzzWorkloadEntry(f *testing.F) {
	for _, file := range []string{"testdata/workloadentry/input.yaml", "testdata/workloadentry-errors/input.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mesh, err := LoadBytes("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, we := range mesh.WorkloadEntries {
			if _, err := netip.ParseAddr(we.Address); err != nil || len(we.Labels) == 0 {
				t.Fatalf("WorkloadEntry %+v accepted", we)
			}
			for name, p := range we.Ports {
				if p < 1 || p > 65535 {
					t.Fatalf("port %s: %d accepted", name, p)
				}
			}
		}
		mesh.Endpoints = model.WorkloadEntryEndpoints(mesh)
		for _, e := range mesh.Endpoints {
			if e.Service == "" || e.ServicePort == 0 || e.Port < 1 || e.Port > 65535 {
				t.Fatalf("endpoint %+v", e)
			}
		}
		proxy := &model.Proxy{ID: "c-0.default", Role: model.RoleSidecar, Workload: model.NamespacedName{Namespace: "default", Name: "c"}, Capture: model.CaptureIPTables, IP: "100.64.0.2"}
		for _, p := range []*model.Proxy{nil, proxy} {
			_, _ = translate.ForProxy(mesh, p)
		}
		var targets []string
		for _, s := range mesh.Services {
			for _, p := range s.Ports {
				targets = append(targets, model.UpstreamKey(s.Hostname(mesh.Suffix()), p.Port))
			}
		}
		_, _ = translate.NewIndex(mesh).ForClient(targets)
	})
}
