package server

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"skein.dev/skein/internal/model"
)

// Scope inferred from traffic (docs/USAGE.md, "Scoping a proxy's config"): for proxies
// whose Sidecar has scope.skein.dev/infer-from-traffic, the control plane keeps, per
// workload, the service hosts its proxies asked for on demand (a request for a host
// their config lacks) or reported using, each with its last-used time. They are added
// to the workload's scope (model.Proxy.ObservedHosts) until unused for the Sidecar's
// TTL. With Options.ObservedFile it is saved there (observed_store.go); otherwise
// after a restart it refills on demand.

// maxObservedHosts bounds one workload's set: hosts come from the proxies.
const maxObservedHosts = 1000

// observedSweep is how often expired hosts are dropped.
const observedSweep = 30 * time.Second

type observedHost struct {
	last time.Time
	ttl  time.Duration
}

// ObserveResult is the control plane's answer to a proxy's report.
type ObserveResult struct {
	// Active: the proxy's Sidecar infers scope from traffic (else nothing was kept, and
	// the proxy need not report again).
	Active bool
	// Hosts are the reported hosts that name services of the mesh, as FQDNs: they are
	// in the proxy's scope (its config has them, or gets them with the next push).
	Hosts []string
}

// ErrUnknownProxy: a report from a node id the control plane has no stream from.
var ErrUnknownProxy = errors.New("unknown proxy")

// Observe records hosts a proxy used (onDemand false: its periodic report) or needs
// now (onDemand true: a request for a host its config lacks). Newly seen hosts are
// added to the scope of every proxy of the workload, whose snapshots are rebuilt before
// Observe returns, so the answer means "the config is on its way".
func (s *Server) Observe(proxyID string, hosts []string) (ObserveResult, error) {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	n := s.nodes[proxyID]
	mesh := s.mesh
	s.mu.Unlock()
	if n == nil || n.proxy == nil {
		return ObserveResult{}, ErrUnknownProxy
	}
	if mesh == nil {
		mesh = &model.Mesh{}
	}
	idx := s.indexFor(mesh)
	proxy := n.proxy
	ttl, ok := idx.InferredScope(proxy)
	if !ok {
		return ObserveResult{}, nil
	}
	res := ObserveResult{Active: true}
	now := s.now()
	changed := false
	s.mu.Lock()
	if s.observed == nil {
		s.observed = map[model.NamespacedName]map[string]observedHost{}
	}
	set := s.observed[proxy.Workload]
	if set == nil {
		set = map[string]observedHost{}
		s.observed[proxy.Workload] = set
	}
	for _, h := range hosts {
		fqdn, ok := idx.ResolveHost(proxy.Workload.Namespace, h)
		if !ok {
			continue
		}
		if _, had := set[fqdn]; !had {
			if len(set) >= maxObservedHosts {
				continue
			}
			changed = true
		}
		set[fqdn] = observedHost{last: now, ttl: ttl}
		if !slices.Contains(res.Hosts, fqdn) {
			res.Hosts = append(res.Hosts, fqdn)
		}
	}
	var ids []string
	if changed {
		ids = s.workloadNodesLocked(map[model.NamespacedName]bool{proxy.Workload: true})
		s.saveObservedLocked()
	} else if len(res.Hosts) > 0 {
		s.observedDirty = true // new last-used times: saved with the next sweep
	}
	s.mu.Unlock()
	for _, id := range ids {
		_ = s.pushNodeLocked(id) // errors are in the node's status
	}
	if changed {
		s.log.Info("scope inferred from traffic", "workload", proxy.Workload.String(), "hosts", res.Hosts)
	}
	return res, nil
}

// expireObserved drops hosts unused for their TTL and rebuilds the affected proxies.
func (s *Server) expireObserved() {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	now := s.now()
	affected := map[model.NamespacedName]bool{}
	for wl, set := range s.observed {
		for h, o := range set {
			if now.Sub(o.last) > o.ttl {
				delete(set, h)
				affected[wl] = true
			}
		}
		if len(set) == 0 {
			delete(s.observed, wl)
		}
	}
	ids := s.workloadNodesLocked(affected)
	if len(affected) > 0 || s.observedDirty {
		s.saveObservedLocked()
	}
	s.mu.Unlock()
	for _, id := range ids {
		_ = s.pushNodeLocked(id)
	}
}

// workloadNodesLocked lists the proxies of the given workloads. Callers hold mu.
func (s *Server) workloadNodesLocked(wls map[model.NamespacedName]bool) []string {
	var ids []string
	if len(wls) == 0 {
		return nil
	}
	for id, n := range s.nodes {
		if n.proxy != nil && wls[n.proxy.Workload] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// withObserved returns the proxy to translate: with its workload's observed hosts when
// there are any (a copy: the node's proxy is shared). Callers hold mu.
func (s *Server) withObservedLocked(p *model.Proxy) *model.Proxy {
	if p == nil {
		return nil
	}
	set := s.observed[p.Workload]
	if len(set) == 0 {
		return p
	}
	cp := *p
	cp.ObservedHosts = make([]string, 0, len(set))
	for h := range set {
		cp.ObservedHosts = append(cp.ObservedHosts, h)
	}
	sort.Strings(cp.ObservedHosts)
	return &cp
}

// scopeObserver serves the scope service (internal/xds/scopeapi) for a Server.
type scopeObserver struct{ s *Server }

func (o scopeObserver) Observe(_ context.Context, proxyID string, hosts []string) (bool, []string, error) {
	res, err := o.s.Observe(proxyID, hosts)
	if errors.Is(err, ErrUnknownProxy) {
		return false, nil, status.Error(codes.NotFound, "scope: no xDS stream from proxy "+proxyID)
	}
	return res.Active, res.Hosts, err
}
