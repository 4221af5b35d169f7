package istio

import (
	"net/netip"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// The WorkloadEntry kind shares its message with ServiceEntry.endpoints, whose fields
// (address, ports, labels, locality, weight) serviceentry.go allows; weight is refused
// below for the kind, since a selected endpoint carries no weight in skein yet.

// WorkloadEntry translates a checked WorkloadEntry of the object nn: a workload at a
// fixed IP that Services and ServiceEntries select by its labels.
func WorkloadEntry(nn model.NamespacedName, spec *networking.WorkloadEntry) (*model.WorkloadEntry, []strict.Issue) {
	var is issues
	out := &model.WorkloadEntry{NamespacedName: nn, Address: spec.GetAddress(), Labels: spec.GetLabels(), Locality: spec.GetLocality()}
	switch addr, err := netip.ParseAddr(spec.GetAddress()); {
	case spec.GetAddress() == "":
		is.add("spec.address", "address is required (the IP the workload listens on)")
	case err != nil:
		is.add("spec.address", "address %q must be an IP (DNS names and Unix sockets are not supported yet by skein)", spec.GetAddress())
	case addr.Zone() != "":
		is.add("spec.address", "address %q: zoned IPv6 addresses are not supported", spec.GetAddress())
	}
	for _, k := range model.SortedKeys(spec.GetLabels()) {
		path := strict.Key("spec.labels", k)
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			is.add(path, "invalid label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(spec.GetLabels()[k]); len(msgs) > 0 {
			is.add(path, "invalid label value %q: %s", spec.GetLabels()[k], msgs[0])
		}
	}
	if len(spec.GetLabels()) == 0 {
		is.add("spec.labels", "labels are required: Services and ServiceEntries select a WorkloadEntry by its labels")
	}
	for _, name := range model.SortedKeys(spec.GetPorts()) {
		n := spec.GetPorts()[name]
		path := strict.Key("spec.ports", name)
		if msgs := validation.IsValidPortName(name); len(msgs) > 0 {
			is.add(path, "invalid port name %q: %s", name, msgs[0])
		}
		if n == 0 || n > 65535 {
			is.add(path, "port %d out of range 1..65535", n)
		}
		if out.Ports == nil {
			out.Ports = map[string]int{}
		}
		out.Ports[name] = int(n)
	}
	if l := spec.GetLocality(); l != "" {
		parts := strings.Split(l, "/")
		if len(parts) > 3 || parts[0] == "" {
			is.add("spec.locality", "locality %q: want region, region/zone or region/zone/subzone", l)
		}
	}
	if spec.GetWeight() != 0 {
		is.add("spec.weight", "weight is not supported yet by skein on a WorkloadEntry (every selected endpoint weighs 1)")
	}
	return out, is
}
