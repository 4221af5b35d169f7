package istio

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// Catalog is what references are checked against: every Service and DestinationRule
// of the load.
type Catalog struct {
	Suffix string
	// Services by FQDN.
	Services map[string]*model.Service
	// Subsets by host: the subset names of the host's DestinationRule.
	Subsets map[string][]string
	// UncheckedServices and UncheckedSubsets are hosts of Services and DestinationRules
	// that failed to load: references to them are not reported again, since their own
	// errors already are.
	UncheckedServices, UncheckedSubsets map[string]bool
	// VirtualServices by "namespace/name": root, delegate or failed (delegate.go).
	VirtualServices map[string]string
}

// VirtualServiceReferences checks that hosts, destinations, subsets and ports of a
// VirtualService in namespace ns exist.
func VirtualServiceReferences(ns string, spec *networking.VirtualService, cat *Catalog) []strict.Issue {
	var is issues
	mesh := len(spec.GetGateways()) == 0
	for _, g := range spec.GetGateways() {
		mesh = mesh || g == "mesh"
	}
	for i, h := range spec.GetHosts() {
		// A host served only by gateways is a name clients use (shop.example.com), not
		// a Service.
		if mesh && h != "" && h[0] != '*' {
			cat.service(h, ResolveHost(h, ns, cat.Suffix), strict.Index("spec.hosts", i), &is)
		}
	}
	for i, r := range spec.GetHttp() {
		for j, d := range r.GetRoute() {
			path := strict.Index(strict.Field(strict.Index("spec.http", i), "route"), j)
			cat.destination(d.GetDestination(), ns, strict.Field(path, "destination"), &is)
		}
		if m := r.GetMirror(); m != nil {
			cat.destination(m, ns, strict.Field(strict.Index("spec.http", i), "mirror"), &is)
		}
		for j, m := range r.GetMirrors() {
			path := strict.Index(strict.Field(strict.Index("spec.http", i), "mirrors"), j)
			cat.destination(m.GetDestination(), ns, strict.Field(path, "destination"), &is)
		}
	}
	for i, r := range spec.GetTcp() {
		for j, d := range r.GetRoute() {
			path := strict.Index(strict.Field(strict.Index("spec.tcp", i), "route"), j)
			cat.destination(d.GetDestination(), ns, strict.Field(path, "destination"), &is)
		}
	}
	for i, r := range spec.GetTls() {
		for j, d := range r.GetRoute() {
			path := strict.Index(strict.Field(strict.Index("spec.tls", i), "route"), j)
			cat.destination(d.GetDestination(), ns, strict.Field(path, "destination"), &is)
		}
	}
	delegateReferences(ns, spec, cat, &is)
	return is
}

// DestinationRuleReferences checks that a DestinationRule's host is a Service.
func DestinationRuleReferences(ns string, spec *networking.DestinationRule, cat *Catalog) []strict.Issue {
	var is issues
	if h := spec.GetHost(); h != "" && h[0] != '*' {
		before := len(is)
		if svc := cat.service(h, ResolveHost(h, ns, cat.Suffix), "spec.host", &is); svc != nil {
			portLevelReferences(spec, svc, &is)
		}
		for i := before; i < len(is); i++ {
			if is[i].Code == CodeUnknownHost {
				is[i].Code = CodeRuleNoService
			}
		}
	}
	return is
}

// service finds the Service of a resolved host; written is the host as the user wrote it.
// Codes of reference problems, as `skein analyze` reports them (internal/analyze).
const (
	CodeUnknownSubset = "SK0201"
	CodeUnknownHost   = "SK0202"
	CodeWeightSum     = "SK0204"
	CodeRuleNoService = "SK0206"
)

// addCode is is.add with an analysis code.
func (is *issues) addCode(code, path, format string, args ...any) {
	is.add(path, format, args...)
	(*is)[len(*is)-1].Code = code
}

func (c *Catalog) service(written, host, path string, is *issues) *model.Service {
	if s := c.Services[host]; s != nil {
		return s
	}
	if s := c.Services[written]; s != nil && s.Entry != nil {
		return s // a ServiceEntry host, used as written
	}
	switch {
	case c.UncheckedServices[written]:
	case c.UncheckedServices[host]:
	case !inCluster(host, c.Suffix):
		is.addCode(CodeUnknownHost, path, "host %q is neither a Service nor a ServiceEntry host: declare it with a ServiceEntry", written)
	case written != host:
		is.addCode(CodeUnknownHost, path, "host %q (%s) is not a known Service", written, host)
	default:
		is.addCode(CodeUnknownHost, path, "host %q is not a known Service", host)
	}
	return nil
}

func (c *Catalog) destination(d *networking.Destination, ns, path string, is *issues) {
	if d.GetHost() == "" {
		return // reported by the translation
	}
	host := ResolveHost(d.GetHost(), ns, c.Suffix)
	svc := c.service(d.GetHost(), host, strict.Field(path, "host"), is)
	if svc == nil {
		return
	}
	if p := d.GetPort().GetNumber(); p != 0 {
		if _, ok := svc.Port(int(p)); !ok {
			is.add(strict.Field(path, "port.number"), "port %d is not a port of Service %s/%s (ports: %s)", p, svc.Namespace, svc.Name, portList(svc))
		}
	}
	if sub := d.GetSubset(); sub != "" && !c.UncheckedSubsets[host] {
		subsets, ok := c.Subsets[host]
		switch {
		case !ok:
			is.addCode(CodeUnknownSubset, strict.Field(path, "subset"), "subset %q: no DestinationRule defines subsets for host %q", sub, host)
		case len(subsets) == 0:
			is.addCode(CodeUnknownSubset, strict.Field(path, "subset"), "subset %q: the DestinationRule for host %q defines no subsets", sub, host)
		case !slices.Contains(subsets, sub):
			is.addCode(CodeUnknownSubset, strict.Field(path, "subset"), "subset %q is not defined in the DestinationRule for host %q (defined: %s)", sub, host, strings.Join(subsets, ", "))
		}
	}
}

func portList(s *model.Service) string {
	ports := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		ports[i] = fmt.Sprint(p.Port)
	}
	return strings.Join(ports, ", ")
}
