package translate

// scopePorts narrows the service ports a sidecar gets outbound config for (clusters,
// endpoints, virtual hosts, upstream listeners) to what the Sidecar resource that
// applies to it imports (model.Mesh.SidecarFor, Istio's selection order). Without a
// Sidecar, or for a generic client, every service port stays: the whole mesh.
//
// On top of the declared egress hosts, the scope is inferred from routes: when an
// imported host has a VirtualService, the services its routes send to are imported too
// (their ports, clusters and subsets), so a route of an imported host never points at a
// cluster the proxy does not have. Istio leaves such a route dangling (503 "no cluster");
// skein closes the set because the proxy can only ever send there through that route.
// This is one level deep on purpose: the destination's own VirtualService is evaluated
// by no one on this path.
func (b *builder) scopePorts(all []servicePort) []servicePort {
	if b.proxy == nil {
		return all
	}
	labels := b.proxy.Labels
	if w := b.workloads[b.proxy.Workload]; w != nil && len(labels) == 0 {
		labels = w.Labels
	}
	sc := b.mesh.SidecarFor(b.proxy.Workload.Namespace, labels)
	if sc == nil {
		return all
	}
	imported := map[string]bool{}
	for _, sp := range all {
		if !imported[sp.host] && sc.Imports(sp.host, sp.svc.Namespace) {
			imported[sp.host] = true
		}
	}
	inferred := map[string]bool{}
	for host := range imported {
		vs := b.virtualServiceFor(host)
		if vs == nil {
			continue
		}
		for _, r := range vs.HTTP {
			for _, d := range r.Destinations {
				inferred[d.Host] = true
			}
		}
		for _, r := range vs.TCP {
			for _, d := range r.Destinations {
				inferred[d.Host] = true
			}
		}
	}
	out := make([]servicePort, 0, len(imported))
	for _, sp := range all {
		if imported[sp.host] || inferred[sp.host] {
			out = append(out, sp)
		}
	}
	return out
}
