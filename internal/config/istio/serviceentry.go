package istio

import (
	"net/netip"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/kube"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

func init() {
	allowFields(
		"istio.networking.v1alpha3.ServiceEntry.hosts",
		"istio.networking.v1alpha3.ServiceEntry.addresses",
		"istio.networking.v1alpha3.ServiceEntry.ports",
		"istio.networking.v1alpha3.ServiceEntry.location",
		"istio.networking.v1alpha3.ServiceEntry.resolution",
		"istio.networking.v1alpha3.ServiceEntry.endpoints",
		"istio.networking.v1alpha3.ServiceEntry.workload_selector",
		"istio.networking.v1alpha3.ServiceEntry.export_to",
		"istio.networking.v1alpha3.ServicePort.number",
		"istio.networking.v1alpha3.ServicePort.protocol",
		"istio.networking.v1alpha3.ServicePort.name",
		"istio.networking.v1alpha3.ServicePort.target_port",
		"istio.networking.v1alpha3.WorkloadEntry.address",
		"istio.networking.v1alpha3.WorkloadEntry.ports",
		"istio.networking.v1alpha3.WorkloadEntry.labels",
		"istio.networking.v1alpha3.WorkloadEntry.locality",
		"istio.networking.v1alpha3.WorkloadEntry.weight",
		"istio.networking.v1alpha3.WorkloadSelector.labels",
	)
}

// ServiceEntry translates a checked ServiceEntry of the object nn into one model
// Service per host (model/serviceentry.go). Hosts are used as written: a ServiceEntry
// names hosts, it does not complete short names.
func ServiceEntry(nn model.NamespacedName, spec *networking.ServiceEntry) ([]*model.Service, []strict.Issue) {
	var is issues
	entry := &model.ServiceEntry{
		Name:     nn,
		ExportTo: spec.GetExportTo(),
	}
	switch spec.GetLocation() {
	case networking.ServiceEntry_MESH_INTERNAL:
		entry.Location = model.MeshInternal
	default:
		entry.Location = model.MeshExternal
	}
	switch spec.GetResolution() {
	case networking.ServiceEntry_STATIC:
		entry.Resolution = model.ResolutionStatic
	case networking.ServiceEntry_DNS:
		entry.Resolution = model.ResolutionDNS
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		entry.Resolution = model.ResolutionDNSRoundRobin
	default:
		entry.Resolution = model.ResolutionNone
	}

	if len(spec.GetHosts()) == 0 {
		is.add("spec.hosts", "at least one host is required")
	}
	seenHost := map[string]int{}
	for i, h := range spec.GetHosts() {
		path := strict.Index("spec.hosts", i)
		switch first, dup := seenHost[h]; {
		case h == "":
			is.add(path, "host must not be empty")
		case strings.Contains(h, "*"):
			is.add(path, "wildcard host %q is not supported yet by skein", h)
		case dup:
			is.add(path, "host %q is also spec.hosts[%d]", h, first)
		default:
			if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
				is.add(path, "invalid host %q: %s", h, msgs[0])
			}
		}
		seenHost[h] = i
	}

	var vip string
	for i, a := range spec.GetAddresses() {
		path := strict.Index("spec.addresses", i)
		if p, err := netip.ParsePrefix(a); err == nil {
			if p.Bits() == p.Addr().BitLen() && vip == "" && p.Addr().Is4() {
				vip = p.Addr().String()
			}
			entry.Addresses = append(entry.Addresses, a)
			continue
		}
		addr, err := netip.ParseAddr(a)
		if err != nil {
			is.add(path, "address %q is neither an IP nor a CIDR", a)
			continue
		}
		if vip == "" && addr.Is4() {
			vip = addr.String()
		}
		entry.Addresses = append(entry.Addresses, a)
	}

	ports := entryPorts(spec.GetPorts(), &is)
	portNames := map[string]bool{}
	for _, p := range ports {
		portNames[p.Name] = true
	}

	selector := spec.GetWorkloadSelector().GetLabels()
	if spec.GetWorkloadSelector() != nil && len(selector) == 0 {
		is.add("spec.workloadSelector.labels", "labels are required when workloadSelector is set")
	}
	if selector != nil && len(spec.GetEndpoints()) > 0 {
		is.add("spec.endpoints", "endpoints and workloadSelector are mutually exclusive")
	}
	switch n := len(spec.GetEndpoints()); {
	case entry.Resolution == model.ResolutionNone && n > 0:
		is.add("spec.resolution", "resolution NONE takes no endpoints (connections go to the address the client dialed): use STATIC or DNS")
	case entry.Resolution == model.ResolutionStatic && n == 0 && selector == nil:
		is.add("spec.endpoints", "resolution STATIC needs endpoints or a workloadSelector")
	case entry.Resolution == model.ResolutionDNSRoundRobin && n > 1:
		is.add("spec.endpoints", "resolution DNS_ROUND_ROBIN takes at most one endpoint, got %d", n)
	}
	for i, e := range spec.GetEndpoints() {
		path := strict.Index("spec.endpoints", i)
		ep := model.EntryEndpoint{Address: e.GetAddress(), Labels: e.GetLabels(), Locality: e.GetLocality(), Weight: int(e.GetWeight())}
		_, ipErr := netip.ParseAddr(e.GetAddress())
		switch {
		case e.GetAddress() == "":
			is.add(strict.Field(path, "address"), "address is required")
		case entry.Resolution == model.ResolutionStatic && ipErr != nil:
			is.add(strict.Field(path, "address"), "address %q must be an IP with resolution STATIC (use DNS for names)", e.GetAddress())
		case ipErr != nil:
			if msgs := validation.IsDNS1123Subdomain(e.GetAddress()); len(msgs) > 0 {
				is.add(strict.Field(path, "address"), "address %q is neither an IP nor a DNS name: %s", e.GetAddress(), msgs[0])
			}
		}
		for _, name := range model.SortedKeys(e.GetPorts()) {
			n := e.GetPorts()[name]
			switch {
			case !portNames[name]:
				is.add(strict.Key(strict.Field(path, "ports"), name), "port name %q is not a port of this ServiceEntry", name)
			case n == 0 || n > 65535:
				is.add(strict.Key(strict.Field(path, "ports"), name), "port %d out of range 1..65535", n)
			}
			if ep.Ports == nil {
				ep.Ports = map[string]int{}
			}
			ep.Ports[name] = int(n)
		}
		entry.Endpoints = append(entry.Endpoints, ep)
	}
	if entry.Resolution == model.ResolutionDNS || entry.Resolution == model.ResolutionDNSRoundRobin {
		if len(spec.GetEndpoints()) == 0 && selector != nil {
			is.add("spec.resolution", "resolution %s with a workloadSelector: use STATIC", entry.Resolution)
		}
	}
	for i, x := range spec.GetExportTo() {
		if x == "." || x == "*" {
			continue
		}
		if msgs := validation.IsDNS1123Label(x); len(msgs) > 0 {
			is.add(strict.Index("spec.exportTo", i), "exportTo %q must be \".\", \"*\" or a namespace: %s", x, msgs[0])
		}
	}

	var out []*model.Service
	for _, h := range spec.GetHosts() {
		if h == "" {
			continue
		}
		out = append(out, &model.Service{
			NamespacedName: model.NamespacedName{Namespace: nn.Namespace, Name: h},
			Host:           h,
			Selector:       selector,
			Ports:          ports,
			VIP:            vip,
			Entry:          entry,
		})
	}
	if len(spec.GetHosts()) > 1 && vip != "" {
		// One VIP cannot route to several hosts by address; each host then gets its own.
		for _, s := range out {
			s.VIP = ""
		}
	}
	return out, is
}

// entryPorts checks spec.ports: each needs a unique number and name; the protocol is
// read as Istio does (HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS...), an unknown one
// is an error since nothing could sniff it for an external host.
func entryPorts(in []*networking.ServicePort, is *issues) []model.ServicePort {
	if len(in) == 0 {
		is.add("spec.ports", "at least one port is required")
	}
	var out []model.ServicePort
	numbers, names := map[uint32]int{}, map[string]int{}
	for i, p := range in {
		path := strict.Index("spec.ports", i)
		if p.GetNumber() == 0 || p.GetNumber() > 65535 {
			is.add(strict.Field(path, "number"), "port number %d out of range 1..65535", p.GetNumber())
		} else if first, dup := numbers[p.GetNumber()]; dup {
			is.add(strict.Field(path, "number"), "port %d is also spec.ports[%d]", p.GetNumber(), first)
		}
		numbers[p.GetNumber()] = i
		if p.GetName() == "" {
			is.add(strict.Field(path, "name"), "name is required")
		} else if first, dup := names[p.GetName()]; dup {
			is.add(strict.Field(path, "name"), "port name %q is also spec.ports[%d]", p.GetName(), first)
		}
		names[p.GetName()] = i
		if p.GetTargetPort() > 65535 {
			is.add(strict.Field(path, "targetPort"), "targetPort %d out of range", p.GetTargetPort())
		}
		proto, ok := kube.ParseProtocol(p.GetProtocol())
		if !ok && p.GetProtocol() != "" { // empty: not declared, sniffed as for a Service
			is.add(strict.Field(path, "protocol"), "protocol %q is not supported (HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS)", p.GetProtocol())
		}
		out = append(out, model.ServicePort{Name: p.GetName(), Port: int(p.GetNumber()), TargetPort: int(p.GetTargetPort()), Protocol: proto})
	}
	return out
}
