package config

import (
	"strings"

	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/model"
)

// resolveEntryHosts points VirtualService and DestinationRule hosts at ServiceEntry
// hosts written with one dot (httpbin.org): the adapters complete such names as
// name.namespace (httpbin.org.svc.cluster.local), which Istio does not do for a host
// a ServiceEntry declares. A name that is a Service stays one.
func resolveEntryHosts(mesh *model.Mesh, cat *istio.Catalog) {
	suffix := "." + mesh.Suffix()
	fix := func(h string) string {
		if cat.Services[h] != nil {
			return h
		}
		if short, ok := strings.CutSuffix(h, suffix); ok {
			if s := cat.Services[short]; s != nil && s.Entry != nil {
				return short
			}
		}
		return h
	}
	for _, vs := range mesh.VirtualServices {
		for i := range vs.Hosts {
			vs.Hosts[i] = fix(vs.Hosts[i])
		}
		for i := range vs.HTTP {
			for j := range vs.HTTP[i].Destinations {
				d := &vs.HTTP[i].Destinations[j]
				d.Host = fix(d.Host)
			}
			for j := range vs.HTTP[i].Mirrors {
				d := &vs.HTTP[i].Mirrors[j].Destination
				d.Host = fix(d.Host)
			}
		}
		for i := range vs.TCP {
			for j := range vs.TCP[i].Destinations {
				d := &vs.TCP[i].Destinations[j]
				d.Host = fix(d.Host)
			}
		}
	}
	for _, vs := range mesh.VirtualServices {
		for i := range vs.TLS {
			for j := range vs.TLS[i].Destinations {
				d := &vs.TLS[i].Destinations[j]
				d.Host = fix(d.Host)
			}
		}
	}
	for _, dr := range mesh.DestinationRules {
		dr.Host = fix(dr.Host)
	}
}
