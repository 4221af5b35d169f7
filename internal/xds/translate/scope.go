package translate

import (
	"net"
	"slices"
	"strings"
	"time"

	"skein.dev/skein/internal/model"
)

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
//
// It returns the ports in scope and the set of their hosts (nil when unscoped).
func (b *builder) scopePorts(all []servicePort) ([]servicePort, map[string]bool) {
	if b.proxy == nil || b.proxy.Role == model.RoleGateway {
		return all, nil // Sidecar resources do not apply to gateways, as in Istio
	}
	labels := b.proxy.Labels
	if w := b.workloads[b.proxy.Workload]; w != nil && len(labels) == 0 {
		labels = w.Labels
	}
	sc := b.mesh.SidecarFor(b.proxy.Workload.Namespace, labels)
	if sc == nil {
		return all, nil
	}
	imported := b.imported(sc)
	if sc.InferFromTraffic {
		// Seen in traffic (the control plane keeps them until unused for the TTL);
		// only services of the mesh count.
		for _, host := range b.proxy.ObservedHosts {
			if b.idx.services[host] != nil {
				imported[host] = true
			}
		}
	}
	inScope := make(map[string]bool, len(imported))
	for host := range imported {
		inScope[host] = true
		vs := b.virtualServiceFor(host)
		if vs == nil {
			continue
		}
		for _, r := range vs.HTTP {
			for _, d := range r.Destinations {
				inScope[d.Host] = true
			}
			for _, m := range r.Mirrors {
				inScope[m.Destination.Host] = true
			}
		}
		for _, r := range vs.TCP {
			for _, d := range r.Destinations {
				inScope[d.Host] = true
			}
		}
		for _, r := range vs.TLS {
			for _, d := range r.Destinations {
				inScope[d.Host] = true
			}
		}
	}
	// The ports of the hosts in scope, in the Index's order (by host, then port),
	// without walking every port of the mesh.
	var picked []int
	for host := range inScope {
		picked = append(picked, b.idx.hostPorts[host]...)
	}
	slices.Sort(picked)
	out := make([]servicePort, 0, len(picked))
	for _, i := range picked {
		out = append(out, b.idx.ports[i])
	}
	return out, inScope
}

// imported lists the hosts of the mesh a Sidecar's egress hosts import. Exact names
// are looked up; wildcards are matched against the services of the namespaces they
// name (all of them for "*/").
func (b *builder) imported(sc *model.Sidecar) map[string]bool {
	out := map[string]bool{}
	for _, h := range sc.EgressHosts {
		ns, dns, ok := strings.Cut(h, "/")
		if !ok || ns == "~" {
			continue
		}
		if ns == "." {
			ns = sc.Namespace
		}
		if !strings.Contains(dns, "*") {
			if svc := b.idx.services[dns]; svc != nil && (ns == "*" || svc.Namespace == ns) {
				out[dns] = true
			}
			continue
		}
		if ns != "*" {
			for _, host := range b.idx.nsHosts[ns] {
				if model.HostMatches(dns, host) {
					out[host] = true
				}
			}
			continue
		}
		for host := range b.idx.services {
			if model.HostMatches(dns, host) {
				out[host] = true
			}
		}
	}
	return out
}

// InferredScope reports whether the Sidecar that applies to the proxy infers its scope
// from traffic, and for how long an unused host stays.
func (x *Index) InferredScope(p *model.Proxy) (time.Duration, bool) {
	if p == nil || p.Role == model.RoleGateway {
		return 0, false
	}
	labels := p.Labels
	if w := x.workloads[p.Workload]; w != nil && len(labels) == 0 {
		labels = w.Labels
	}
	sc := x.mesh.SidecarFor(p.Workload.Namespace, labels)
	if sc == nil || !sc.InferFromTraffic {
		return 0, false
	}
	return sc.InferredTTL, true
}

// ResolveHost finds the service a request's Host names, as a client in namespace
// would mean it (Istio's domains: FQDN, name, name.ns, name.ns.svc, with or without a
// port, or a ServiceEntry host). It returns the service's FQDN.
func (x *Index) ResolveHost(namespace, host string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if h, port, err := net.SplitHostPort(host); err == nil && port != "" {
		host = h
	}
	candidates := []string{host}
	switch strings.Count(host, ".") { // x.suffix is "svc.<domain>"
	case 0:
		candidates = append(candidates, host+"."+namespace+"."+x.suffix)
	case 1:
		candidates = append(candidates, host+"."+x.suffix)
	case 2:
		if name, ok := strings.CutSuffix(host, ".svc"); ok {
			candidates = append(candidates, name+"."+x.suffix)
		}
	}
	for _, c := range candidates {
		if x.services[c] != nil {
			return c, true
		}
	}
	return "", false
}
