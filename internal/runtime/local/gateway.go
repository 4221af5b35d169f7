package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"skein.dev/skein/internal/config/gatewayapi"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/supervisor"
)

// startGateway starts a gateway proxy: `skein proxy` in the gateway role, in the host's
// network (so clients on the host reach its listeners on 127.0.0.1 or the Gateway's
// addresses, in both isolation modes), configured only by xDS. It has no app and no
// inbound ports: the listeners come from the Gateways that select its labels.
func (m *Mesh) startGateway(ctx context.Context, w *model.Workload, index int) (*replicaRun, error) {
	ports, err := supervisor.AllocatePorts(2)
	if err != nil {
		return nil, err
	}
	r := &replicaRun{index: index, client: &http.Client{Timeout: time.Second}, adminPort: ports[0], metricsPort: ports[1]}
	r.proxy = model.Proxy{
		ID:             fmt.Sprintf("%s-%d.%s", w.Name, index, w.Namespace),
		Role:           model.RoleGateway,
		Workload:       w.NamespacedName,
		Replica:        index,
		Labels:         w.Labels,
		ServiceAccount: w.ServiceAccount,
		Capture:        model.CaptureNone,
		IP:             "127.0.0.1",
	}
	r.users = m.usersFor()
	if r.identity, err = m.sec.forReplica(ctx, r.proxy, r.users.app); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	started := false
	defer func() {
		if !started {
			r.stop()
		}
	}()
	if r.users.sidecar >= 0 {
		// Only the proxy's user can read its credential (users.go).
		if err := proxyReadableToken(r.identity, r.users.sidecar, r.users.sidecar); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	nodeJSON, err := json.Marshal(r.proxy)
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(m.opts.StateDir, "logs")
	log, err := openLog(filepath.Join(logDir, r.proxy.ID+".proxy.log"))
	if err != nil {
		return nil, err
	}
	proxyCmd := m.sidecarCommand(r, string(nodeJSON), logDir)
	var extra []*os.File
	if r.users.sidecar >= 0 {
		if extra, err = r.inheritAccessLog(proxyCmd); err != nil {
			return nil, err
		}
	}
	r.sidecar, err = supervisor.Start(ctx, supervisor.Spec{
		Name:       r.proxy.ID + "/proxy",
		Command:    asUser(m.opts.Self, "", r.users.sidecar, proxyCmd),
		Env:        os.Environ(),
		Stdout:     log,
		Stderr:     log,
		ExtraFiles: extra,
	}, m.logger)
	if err != nil {
		return nil, fmt.Errorf("gateway proxy: %w", err)
	}
	r.waitReady(ctx, 10*time.Second)
	started = true
	return r, nil
}

// gatewaySockets lists where a gateway proxy listens, for the startup lines.
func gatewaySockets(cfg *model.Mesh, p model.Proxy) string {
	var out []string
	seen := map[string]bool{}
	for _, g := range cfg.GatewaysFor(p.Workload.Namespace, p.Labels) {
		for _, l := range g.Listeners {
			addr := l.Address
			if addr == "" {
				addr = "127.0.0.1"
			}
			s := strings.ToLower(string(l.Protocol)) + "://" + net.JoinHostPort(addr, strconv.Itoa(l.Port))
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return "(no listeners)"
	}
	return strings.Join(out, " ")
}

// Objects implements api.ObjectsBackend: the Gateway API objects of the current config
// with their status; a condition's lastTransitionTime is when it last changed status
// or reason (transitionsLocked), as a controller on a cluster reports it.
func (m *Mesh) Objects(kind string) []*model.Object {
	m.mu.Lock()
	defer m.mu.Unlock()
	times := m.transitionsLocked()
	var out []*model.Object
	for _, o := range m.cfg.Objects {
		if kind != "" && o.Kind != kind {
			continue
		}
		c := *o
		c.Manifest = deepCopy(o.Manifest)
		prefix := o.Kind + "/" + o.Name.Namespace + "/" + o.Name.Name + "/"
		gatewayapi.StampTimes(c.Manifest, func(key string, _ map[string]any) time.Time { return times[prefix+key].at })
		out = append(out, &c)
	}
	return out
}

// transition is when a condition took its current status and reason.
type transition struct {
	state string // status/reason
	at    time.Time
}

// transitionsLocked updates the transition times for the current config: a condition
// whose status and reason are what they were keeps its time, any other gets the time
// the config was accepted. Called with m.mu held.
func (m *Mesh) transitionsLocked() map[string]transition {
	if m.condGen == m.cfgGen && m.condTimes != nil {
		return m.condTimes
	}
	next := map[string]transition{}
	for _, o := range m.cfg.Objects {
		prefix := o.Kind + "/" + o.Name.Namespace + "/" + o.Name.Name + "/"
		gatewayapi.StampTimes(deepCopy(o.Manifest), func(key string, cond map[string]any) time.Time {
			state := fmt.Sprint(cond["status"]) + "/" + fmt.Sprint(cond["reason"])
			t := transition{state: state, at: m.cfgAcceptedAt}
			if prev, ok := m.condTimes[prefix+key]; ok && prev.state == state {
				t.at = prev.at
			}
			next[prefix+key] = t
			return t.at
		})
	}
	m.condTimes, m.condGen = next, m.cfgGen
	return next
}

// deepCopy copies a JSON-compatible map: the config's objects are shared and immutable.
func deepCopy(m map[string]any) map[string]any {
	data, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}

// gatewayEndpointsLocked are a gateway workload's endpoints: a gateway has no app
// ports, but a Service may select it (Istio's istio-egressgateway Service), and then
// each of the Service's target ports is the gateway proxy's own listener on the host,
// reached without mesh mTLS (the listener's server decides its TLS). Called with m.mu.
func (m *Mesh) gatewayEndpointsLocked(w *workloadRun) []model.Endpoint {
	var eps []model.Endpoint
	for _, svc := range m.cfg.Services {
		if svc.Namespace != w.spec.Namespace || !model.Selects(svc.Selector, w.spec.Labels) {
			continue
		}
		for _, p := range svc.Ports {
			target := p.TargetPort
			if target == 0 {
				target = p.Port
			}
			for _, r := range w.replicas {
				eps = append(eps, model.Endpoint{
					Workload: w.spec.NamespacedName, Replica: r.index, Labels: w.spec.Labels,
					Address: r.proxy.IP, Port: target, TargetPort: target, Healthy: r.healthy.Load(),
				})
			}
		}
	}
	return eps
}

// withoutGatewayKeys is the mesh as the API shows it: gateway listeners' private keys
// (from Secrets) are left out; the shared mesh is not modified.
func withoutGatewayKeys(cfg *model.Mesh) *model.Mesh {
	if len(cfg.Gateways) == 0 {
		return cfg
	}
	out := *cfg
	out.Gateways = make([]*model.Gateway, len(cfg.Gateways))
	for i, g := range cfg.Gateways {
		c := *g
		c.Listeners = append([]model.GatewayListener(nil), g.Listeners...)
		for j := range c.Listeners {
			if t := c.Listeners[j].TLS; t != nil && t.Key != "" {
				redacted := *t
				redacted.Key = ""
				c.Listeners[j].TLS = &redacted
			}
		}
		out.Gateways[i] = &c
	}
	return &out
}
