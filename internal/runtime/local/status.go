package local

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/capture"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/supervisor"
)

var _ api.Backend = (*Mesh)(nil)

// Status implements api.Backend.
func (m *Mesh) Status() api.Status {
	proxies := m.xds.Status()
	byID := map[string]api.Proxy{}
	st := api.Status{
		ConfigDir:  m.opts.ConfigDir,
		Isolation:  m.opts.Isolation,
		XDSAddress: m.xdsAddr,
		Monitoring: m.monitoringAddr,
		Dashboard:  m.dashboardAddr,
	}
	for _, p := range proxies {
		ap := api.Proxy{ID: p.ID, Connected: p.Connected, Version: p.Version, Acked: p.Acked, InSync: p.InSync}
		if c, ok := m.sec.issuedTo(p.ID); ok {
			ap.SPIFFEID, ap.CertExpiry = c.id, c.notAfter
		}
		if p.NACK != nil {
			ap.NACK = &api.NACK{Type: p.NACK.TypeURL, Version: p.NACK.Version, Message: p.NACK.Message, At: p.NACK.At}
		}
		byID[p.ID] = ap
		st.Proxies = append(st.Proxies, ap)
	}
	if m.pods != nil {
		st.PodSubnet, st.PodGateway = m.pods.Subnet.String(), m.pods.Gateway.String()
	}
	if err := m.xds.LastError(); err != nil {
		st.ControlPlaneError = err.Error()
	}

	var notReady []string
	applied := m.xds.AppliedGeneration()
	m.mu.Lock()
	if applied < m.pushGen {
		notReady = append(notReady, fmt.Sprintf("control plane has not pushed update %d yet (at %d)", m.pushGen, applied))
	}
	st.Generation = m.cfgGen
	st.ConfigErrors = m.cfgErrors
	st.ConfigErrorAt = m.cfgErrorAt
	workloads := m.sortedWorkloadsLocked()
	wantReplicas := map[model.NamespacedName]int{}
	for _, w := range m.cfg.Workloads {
		wantReplicas[w.NamespacedName] = w.Replicas
	}
	type wl struct {
		spec *model.Workload
		reps []*replicaRun
	}
	var snapshot []wl
	for _, w := range workloads {
		snapshot = append(snapshot, wl{w.spec, append([]*replicaRun(nil), w.replicas...)})
	}
	m.mu.Unlock()

	for _, w := range snapshot {
		aw := api.Workload{Name: w.spec.Name, Namespace: w.spec.Namespace}
		if got, want := len(w.reps), wantReplicas[w.spec.NamespacedName]; got != want {
			notReady = append(notReady, fmt.Sprintf("workload %s: %d of %d replicas started", w.spec.NamespacedName, got, want))
		}
		for _, r := range w.reps {
			ar := api.Replica{
				Index:        r.index,
				Port:         r.port,
				Inbound:      r.inboundAddr(),
				InboundPorts: map[string]string{},
				Outbound:     net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.proxy.OutboundHTTPPort)),
				Admin:        r.adminAddr(),
				Metrics:      r.metricsAddr(),
				AccessLog:    r.accessLog,
				Labels:       r.proxy.Labels,
				ProxyID:      r.proxy.ID,
				ProxyState:   string(r.sidecar.State()),
				ProxyPid:     r.sidecar.Pid(),
				State:        "running",
			}
			if r.users.sidecar >= 0 {
				ar.ProxyUID = r.users.sidecar
			}
			if r.users.app >= 0 {
				ar.AppUID = r.users.app
			}
			for cp, p := range r.proxy.InboundPorts {
				ar.InboundPorts[strconv.Itoa(cp)] = net.JoinHostPort(r.proxy.IP, strconv.Itoa(p))
			}
			if r.pod != nil {
				ar.IP, ar.Netns = r.proxy.IP, r.pod.Netns
				ar.Outbound = net.JoinHostPort(r.proxy.IP, strconv.Itoa(capture.DefaultOutboundPort))
				for _, cp := range r.podPorts {
					ar.InboundPorts[strconv.Itoa(cp)] = net.JoinHostPort(r.proxy.IP, strconv.Itoa(cp))
				}
			}
			if r.app != nil {
				ar.State, ar.Pid, ar.Restarts = string(r.app.State()), r.app.Pid(), r.app.Restarts()
				if r.app.State() != supervisor.StateRunning {
					notReady = append(notReady, fmt.Sprintf("%s: app is %s", r.proxy.ID, ar.State))
				}
			}
			if r.hasAppPorts() && !r.healthy.Load() {
				notReady = append(notReady, fmt.Sprintf("%s: not serving yet (app port or sidecar not ready)", r.proxy.ID))
			}
			if r.sidecar.State() != supervisor.StateRunning {
				notReady = append(notReady, fmt.Sprintf("%s: sidecar is %s", r.proxy.ID, ar.ProxyState))
			}
			p, ok := byID[r.proxy.ID]
			switch {
			case !ok || !p.Connected:
				notReady = append(notReady, fmt.Sprintf("%s: sidecar not connected to the control plane", r.proxy.ID))
			case p.NACK != nil:
				notReady = append(notReady, fmt.Sprintf("%s: sidecar rejected config %s: %s", r.proxy.ID, p.NACK.Version, p.NACK.Message))
			case !p.InSync:
				notReady = append(notReady, fmt.Sprintf("%s: sidecar has not ACKed config %s yet", r.proxy.ID, p.Version))
			}
			aw.Replicas = append(aw.Replicas, ar)
		}
		st.Workloads = append(st.Workloads, aw)
	}
	sort.Strings(notReady)
	st.NotReady = notReady
	st.Ready = len(notReady) == 0
	return st
}

// ExecEnv implements api.Backend: the environment of the workload's replica 0.
func (m *Mesh) ExecEnv(name, namespace string) (api.ExecEnv, error) {
	if namespace == "" {
		namespace = "default"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.workloads[model.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return api.ExecEnv{}, fmt.Errorf("workload %s.%s: %w", name, namespace, api.ErrNotFound)
	}
	if len(w.replicas) == 0 {
		return api.ExecEnv{}, fmt.Errorf("workload %s.%s has no running replica", name, namespace)
	}
	r := w.replicas[0]
	env := api.ExecEnv{Workload: name, Namespace: namespace, Replica: r.index, Env: append([]string(nil), r.env...)}
	if r.pod != nil {
		env.Netns = r.pod.Netns
	}
	return env, nil
}

// Config implements api.ConfigBackend: the last accepted configuration.
func (m *Mesh) Config() *model.Mesh {
	m.mu.Lock()
	defer m.mu.Unlock()
	return withoutGatewayKeys(m.cfg)
}
