package istio

import (
	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// VirtualService delegation: a root VirtualService's rule names a delegate (a
// VirtualService without hosts) whose rules it merges (model.ResolveDelegates).
func init() {
	allowFields(
		"istio.networking.v1alpha3.HTTPRoute.delegate",
		"istio.networking.v1alpha3.Delegate.name",
		"istio.networking.v1alpha3.Delegate.namespace",
	)
}

// checkDelegate checks what Istio requires of a delegate VirtualService: only http
// rules, no gateways, and none delegating further.
func checkDelegate(spec *networking.VirtualService, is *issues) {
	if len(spec.GetHttp()) == 0 {
		is.add("spec.hosts", "at least one host is required (a VirtualService without hosts is a delegate and needs http rules)")
	}
	if len(spec.GetGateways()) > 0 {
		is.add("spec.gateways", "a delegate VirtualService (no hosts) must not set gateways: its root's apply")
	}
	if len(spec.GetTcp()) > 0 {
		is.add("spec.tcp", "a delegate VirtualService (no hosts) has http rules only")
	}
	for i, r := range spec.GetHttp() {
		if r.GetDelegate() != nil {
			is.add(strict.Field(strict.Index("spec.http", i), "delegate"), "a delegate VirtualService cannot delegate again (Istio supports one level)")
		}
	}
}

// delegateRef reads a rule's delegate: the rule must not route or redirect itself.
func delegateRef(r *networking.HTTPRoute, path, ns string, is *issues) *model.NamespacedName {
	d := r.GetDelegate()
	dpath := strict.Field(path, "delegate")
	if d.GetName() == "" {
		is.add(strict.Field(dpath, "name"), "name is required")
	}
	if len(r.GetRoute()) > 0 || r.GetRedirect() != nil {
		is.add(dpath, "a rule with delegate must not set route or redirect")
	}
	ref := &model.NamespacedName{Name: d.GetName(), Namespace: d.GetNamespace()}
	if ref.Namespace == "" {
		ref.Namespace = ns
	}
	return ref
}

// delegateReferences checks that every delegate a VirtualService names exists and is a
// delegate (has no hosts).
func delegateReferences(ns string, spec *networking.VirtualService, cat *Catalog, is *issues) {
	for i, r := range spec.GetHttp() {
		d := r.GetDelegate()
		if d == nil || d.GetName() == "" {
			continue
		}
		dns := d.GetNamespace()
		if dns == "" {
			dns = ns
		}
		key := dns + "/" + d.GetName()
		path := strict.Field(strict.Field(strict.Index("spec.http", i), "delegate"), "name")
		switch state, ok := cat.VirtualServices[key]; {
		case !ok:
			is.add(path, "delegate VirtualService %s does not exist", key)
		case state == vsRoot:
			is.add(path, "VirtualService %s has hosts: only a VirtualService without hosts can be a delegate", key)
		}
	}
}

// Kinds of VirtualService in Catalog.VirtualServices.
const (
	vsRoot     = "root"
	vsDelegate = "delegate"
	vsFailed   = "failed" // did not load: references to it are not reported again
)

// AddVirtualService records a loaded VirtualService (value nil: it failed to load)
// so delegate references can be checked.
func (c *Catalog) AddVirtualService(ns, name string, vs *model.VirtualService) {
	if c.VirtualServices == nil {
		c.VirtualServices = map[string]string{}
	}
	state := vsFailed
	switch {
	case vs == nil:
	case vs.IsDelegate():
		state = vsDelegate
	default:
		state = vsRoot
	}
	c.VirtualServices[ns+"/"+name] = state
}
