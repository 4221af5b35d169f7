package controlplane

import (
	"fmt"
	"sort"

	"skein.dev/skein/internal/api"
)

var (
	_ api.Backend           = (*ControlPlane)(nil)
	_ api.CredentialBackend = (*ControlPlane)(nil)
)

// Status implements api.Backend: the connected nodes (proxies and proxyless clients)
// with their ACK/NACK state, and the config's. Ready means the newest config is
// pushed and every connected node has ACKed it.
func (cp *ControlPlane) Status() api.Status {
	st := api.Status{
		ConfigDir:  cp.opts.ConfigDir,
		Isolation:  "control", // no workloads of its own (api.Status.Isolation)
		XDSAddress: cp.xdsAddr,
		Monitoring: cp.monitoringAddr,
		Workloads:  []api.Workload{},
		Proxies:    []api.Proxy{},
	}
	var notReady []string
	for _, p := range cp.xds.Status() {
		ap := api.Proxy{ID: p.ID, Connected: p.Connected, Version: p.Version, Acked: p.Acked, InSync: p.InSync}
		cp.mu.Lock()
		if c, ok := cp.issued[p.ID]; ok {
			ap.SPIFFEID, ap.CertExpiry = c.id, c.notAfter
		}
		cp.mu.Unlock()
		if p.NACK != nil {
			ap.NACK = &api.NACK{Type: p.NACK.TypeURL, Version: p.NACK.Version, Message: p.NACK.Message, At: p.NACK.At}
		}
		st.Proxies = append(st.Proxies, ap)
		switch {
		case !p.Connected:
		case p.NACK != nil:
			notReady = append(notReady, fmt.Sprintf("%s rejected config %s: %s", p.ID, p.NACK.Version, p.NACK.Message))
		case !p.InSync:
			notReady = append(notReady, fmt.Sprintf("%s has not ACKed config %s yet", p.ID, p.Version))
		}
	}
	if err := cp.xds.LastError(); err != nil {
		st.ControlPlaneError = err.Error()
	}
	applied := cp.xds.AppliedGeneration()
	cp.mu.Lock()
	if applied < cp.pushGen {
		notReady = append(notReady, fmt.Sprintf("control plane has not pushed update %d yet (at %d)", cp.pushGen, applied))
	}
	st.Generation = cp.cfgGen
	st.ConfigErrors = cp.cfgErrors
	st.ConfigErrorAt = cp.cfgErrorAt
	cp.mu.Unlock()
	sort.Strings(notReady)
	st.NotReady = notReady
	st.Ready = len(notReady) == 0
	return st
}

// ExecEnv implements api.Backend: skein control runs no workloads.
func (cp *ControlPlane) ExecEnv(name, namespace string) (api.ExecEnv, error) {
	return api.ExecEnv{}, fmt.Errorf("workload %s.%s: %w (skein control runs no workloads)", name, namespace, api.ErrNotFound)
}

// Shutdown implements api.Backend.
func (cp *ControlPlane) Shutdown() { cp.shutdown() }
