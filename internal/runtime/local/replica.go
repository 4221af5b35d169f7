package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/capture"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/supervisor"
)

// workloadRun is one Workload object and the replicas started for it.
type workloadRun struct {
	spec     *model.Workload
	specKey  string // what the replicas were started from; a change restarts them
	replicas []*replicaRun
}

// replicaRun is one replica: a sidecar process and, if the workload has a command, the
// app process, with the ports allocated to them.
type replicaRun struct {
	index       int
	proxy       model.Proxy
	env         []string // the app's environment additions (KEY=VALUE)
	sidecar     *supervisor.Process
	app         *supervisor.Process // nil for workloads without a command
	healthy     atomic.Bool
	client      *http.Client
	adminPort   int
	metricsPort int    // the sidecar's /stats/prometheus (Istio's 15020)
	accessLog   string // the sidecar's access log file, "" when off
	port        int    // the app's $PORT

	// Isolation netns: the replica's pod, the network it belongs to, and the
	// container ports the app listens on.
	pod      *podnet.Pod
	pods     *podnet.Network
	podPorts []int
	files    []*os.File // inherited by the sidecar at every (re)start
	identity *replicaIdentity
	// users the sidecar and the app run as (users.go).
	users replicaUsers
	// telemetry is the Telemetry (Istio kind) in effect for the sidecar's flags.
	telemetry model.EffectiveTelemetry
}

func (r *replicaRun) appPort() int { return r.port }

// firstPort returns the workload's first declared container port, if any.
func (r *replicaRun) firstPort() (int, bool) {
	ports := model.SortedIntKeys(r.proxy.InboundPorts)
	if len(ports) == 0 {
		return 0, false
	}
	return ports[0], true
}

func (r *replicaRun) inboundAddr() string {
	if r.pod != nil {
		return net.JoinHostPort(r.proxy.IP, strconv.Itoa(capture.DefaultInboundPort))
	}
	if cp, ok := r.firstPort(); ok {
		return net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.proxy.InboundPorts[cp]))
	}
	return ""
}

func (r *replicaRun) adminAddr() string {
	return net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.adminPort))
}

func (r *replicaRun) metricsAddr() string {
	return net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.metricsPort))
}

// probe reports whether the replica can take traffic: its sidecar is ready and its
// app accepts connections on every declared port.
func (r *replicaRun) probe(ctx context.Context) bool {
	if r.app != nil && r.app.State() != supervisor.StateRunning {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.adminAddr()+"/ready", nil)
	resp, err := r.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	if r.pod != nil {
		return r.probePod(ctx)
	}
	for _, p := range r.proxy.AppPorts {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(r.proxy.IP, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// specKey is what a workload's replicas are started from: its spec and the Telemetry
// that applies to it (the sidecar's flags), so a change of either restarts them.
func specKey(cfg *model.Mesh, w *model.Workload) string {
	c := *w
	c.Source = model.Source{}
	c.Replicas = 0
	tel := cfg.TelemetryFor(w.NamespacedName, w.Labels)
	tel.Sources = nil
	b, _ := json.Marshal(struct {
		Spec      model.Workload
		Telemetry model.EffectiveTelemetry
	}{c, tel})
	return string(b)
}

// reconcile starts, stops and restarts replicas so they match the current config.
func (m *Mesh) reconcile(ctx context.Context) {
	m.mu.Lock()
	cfg := m.cfg
	want := map[model.NamespacedName]*model.Workload{}
	for _, w := range cfg.Workloads {
		want[w.NamespacedName] = w
	}
	var stop []*replicaRun
	for key, run := range m.workloads {
		w, ok := want[key]
		if !ok || specKey(cfg, w) != run.specKey {
			stop = append(stop, run.replicas...)
			delete(m.workloads, key)
			continue
		}
		run.spec = w
		if len(run.replicas) > w.Replicas {
			stop = append(stop, run.replicas[w.Replicas:]...)
			run.replicas = run.replicas[:w.Replicas]
		}
	}
	type startReq struct {
		run   *workloadRun
		index int
	}
	var start []startReq
	for _, w := range cfg.Workloads {
		run, ok := m.workloads[w.NamespacedName]
		if !ok {
			run = &workloadRun{spec: w, specKey: specKey(cfg, w)}
			m.workloads[w.NamespacedName] = run
		}
		for i := len(run.replicas); i < w.Replicas; i++ {
			start = append(start, startReq{run, i})
		}
	}
	m.mu.Unlock()

	for _, r := range stop {
		r.stop()
	}
	for _, s := range start {
		r, err := m.startReplica(ctx, cfg, s.run.spec, s.index)
		if err != nil {
			m.logger.Error("start replica", "workload", s.run.spec.NamespacedName.String(), "replica", s.index, "err", err)
			fmt.Fprintf(m.opts.Out, "cannot start %s replica %d: %v\n", s.run.spec.NamespacedName, s.index, err)
			continue
		}
		m.mu.Lock()
		s.run.replicas = append(s.run.replicas, r)
		m.mu.Unlock()
	}
	if len(stop) > 0 || len(start) > 0 {
		m.push()
	}
}

func (m *Mesh) stopAll() {
	m.mu.Lock()
	var all []*replicaRun
	for _, w := range m.workloads {
		all = append(all, w.replicas...)
	}
	m.workloads = map[model.NamespacedName]*workloadRun{}
	m.mu.Unlock()
	done := make(chan struct{}, len(all))
	for _, r := range all {
		go func() { r.stop(); done <- struct{}{} }()
	}
	for range all {
		<-done
	}
}

func (r *replicaRun) stop() {
	if r.app != nil {
		r.app.Stop(3 * time.Second)
	}
	if r.sidecar != nil {
		r.sidecar.Stop(2 * time.Second)
	}
	for _, f := range r.files {
		f.Close()
	}
	if r.identity != nil {
		r.identity.release()
	}
	if r.pod != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = r.pods.RemovePod(ctx, r.pod)
	}
}

// hasAppPorts reports whether the replica's app declares ports (it is probed then).
func (r *replicaRun) hasAppPorts() bool { return len(r.proxy.AppPorts) > 0 || len(r.podPorts) > 0 }

// startReplica allocates the replica's ports, starts its sidecar, waits briefly for it
// to be ready (as Istio's holdApplicationUntilProxyStarts), then starts the app.
func (m *Mesh) startReplica(ctx context.Context, cfg *model.Mesh, w *model.Workload, index int) (*replicaRun, error) {
	if w.Role == model.RoleGateway {
		return m.startGateway(ctx, w, index)
	}
	if m.pods != nil {
		return m.startPod(ctx, cfg, w, index)
	}
	suffix := cfg.Suffix()
	type upstream struct {
		svc  *model.Service
		port model.ServicePort
	}
	var ups []upstream
	for _, s := range cfg.Services {
		for _, p := range s.Ports {
			ups = append(ups, upstream{s, p})
		}
	}
	nApp := max(len(w.Ports), 1)
	ports, err := supervisor.AllocatePorts(nApp + len(w.Ports) + 3 + len(ups))
	if err != nil {
		return nil, err
	}
	next := func() int { p := ports[0]; ports = ports[1:]; return p }

	r := &replicaRun{index: index, client: &http.Client{Timeout: time.Second}}
	r.proxy = model.Proxy{
		ID:             fmt.Sprintf("%s-%d.%s", w.Name, index, w.Namespace),
		Role:           model.RoleSidecar,
		Workload:       w.NamespacedName,
		Replica:        index,
		Labels:         w.Labels,
		ServiceAccount: w.ServiceAccount,
		Capture:        model.CaptureNone,
		IP:             "127.0.0.1",
		InboundPorts:   map[int]int{},
		AppPorts:       map[int]int{},
		UpstreamPorts:  map[string]int{},
	}
	appPorts := make([]int, 0, nApp)
	for i := 0; i < nApp; i++ {
		appPorts = append(appPorts, next())
	}
	for i, cp := range w.Ports {
		r.proxy.AppPorts[cp.ContainerPort] = appPorts[i]
		r.proxy.InboundPorts[cp.ContainerPort] = next()
	}
	r.port = appPorts[0]
	r.proxy.OutboundHTTPPort = next()
	r.adminPort = next()
	r.metricsPort = next()
	env := []string{
		"PORT=" + strconv.Itoa(appPorts[0]),
		"SKEIN_WORKLOAD=" + w.Name,
		"SKEIN_NAMESPACE=" + w.Namespace,
		"SKEIN_REPLICA=" + strconv.Itoa(index),
		"SKEIN_SERVICE_ACCOUNT=" + w.ServiceAccount,
		"SKEIN_PROXY_ADMIN=" + r.adminAddr(),
		"HTTP_PROXY=http://" + net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.proxy.OutboundHTTPPort)),
		"http_proxy=http://" + net.JoinHostPort(r.proxy.IP, strconv.Itoa(r.proxy.OutboundHTTPPort)),
		"NO_PROXY=localhost,127.0.0.1,::1",
		"no_proxy=localhost,127.0.0.1,::1",
	}
	for i, cp := range w.Ports {
		if cp.Name != "" {
			env = append(env, "PORT_"+envName(cp.Name)+"="+strconv.Itoa(appPorts[i]))
		}
	}
	// Kubernetes-style service variables point at this sidecar's per-upstream ports, so
	// TCP and gRPC clients reach same-namespace services through the mesh.
	seenSvc := map[string]bool{}
	for _, u := range ups {
		local := next()
		r.proxy.UpstreamPorts[model.UpstreamKey(u.svc.Hostname(suffix), u.port.Port)] = local
		if u.svc.Namespace != w.Namespace {
			continue
		}
		prefix := envName(u.svc.Name) + "_SERVICE_"
		if !seenSvc[u.svc.Name] {
			seenSvc[u.svc.Name] = true
			env = append(env, prefix+"HOST=127.0.0.1", prefix+"PORT="+strconv.Itoa(local))
		}
		if u.port.Name != "" {
			env = append(env, prefix+"PORT_"+envName(u.port.Name)+"="+strconv.Itoa(local))
		}
	}
	// The sidecar's bootstrap credential and the app's SPIFFE Workload API socket.
	r.users = m.usersFor()
	r.telemetry = cfg.TelemetryFor(w.NamespacedName, w.Labels)
	if r.identity, err = m.sec.forReplica(ctx, r.proxy, r.users.app); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	started := false
	defer func() {
		if !started {
			r.stop() // revokes the credential, closes the socket, stops what started
		}
	}()
	if r.users.sidecar >= 0 {
		// Only the sidecar's user can read its credential (users.go).
		if err := proxyReadableToken(r.identity, r.users.sidecar, r.users.sidecar); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	env = append(env, "SPIFFE_ENDPOINT_SOCKET=unix://"+r.identity.socket)
	userEnv := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		userEnv[k] = v
	}
	for _, e := range w.Env {
		v := supervisor.ExpandArgs([]string{e.Value}, userEnv)[0]
		userEnv[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	r.env = env

	nodeJSON, err := json.Marshal(r.proxy)
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(m.opts.StateDir, "logs")
	sidecarLog, err := openLog(filepath.Join(logDir, r.proxy.ID+".proxy.log"))
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
		Stdout:     sidecarLog,
		Stderr:     sidecarLog,
		ExtraFiles: extra,
	}, m.logger)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	r.waitReady(ctx, 10*time.Second)
	if len(w.Command) == 0 {
		started = true
		return r, nil
	}
	appLog, err := openLog(filepath.Join(logDir, r.proxy.ID+".log"))
	if err != nil {
		return nil, err
	}
	cmd := supervisor.ResolveCommand(supervisor.ExpandArgs(w.Command, userEnv), m.opts.Self)
	r.app, err = supervisor.Start(ctx, supervisor.Spec{
		Name:    r.proxy.ID,
		Command: asUser(m.opts.Self, "", r.users.app, cmd),
		Env:     append(os.Environ(), env...),
		Stdout:  appLog,
		Stderr:  appLog,
	}, m.logger)
	if err != nil {
		return nil, fmt.Errorf("app %q: %w", strings.Join(cmd, " "), err)
	}
	started = true
	return r, nil
}

func (r *replicaRun) waitReady(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.adminAddr()+"/ready", nil)
		if resp, err := r.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// envName turns a name into an environment variable part as Kubernetes does:
// upper case, dashes and dots to underscores.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, s)
}

// sidecarCommand is the proxy command line of a replica's sidecar: the lean
// skein-proxy when there is one (Options.ProxyBinary), else `skein proxy`.
func (m *Mesh) sidecarCommand(r *replicaRun, nodeJSON, logDir string) []string {
	xds := m.xdsAddr
	if r.pod != nil {
		xds = m.podXDS // pods reach the control plane on the bridge
	}
	cmd := []string{m.opts.Self, "proxy"}
	if m.opts.ProxyBinary != "" {
		cmd = []string{m.opts.ProxyBinary}
	}
	cmd = append(cmd,
		"--xds-address", xds,
		"--node-json", nodeJSON,
		"--admin-address", r.adminAddr(),
		"--metrics-address", r.metricsAddr(),
		"--ca-token-file", r.identity.tokenFile,
		"--trust-domain", m.sec.ca.TrustDomain().Name())
	if !m.opts.NoAccessLogs && !r.telemetry.AccessLogDisabled {
		r.accessLog = filepath.Join(logDir, r.proxy.ID+".access.log")
		cmd = append(cmd, "--access-log", r.accessLog)
	}
	cmd = append(cmd, m.opts.ProxyArgs...)
	return append(cmd, telemetryArgs(r.telemetry, m.opts.ProxyArgs)...)
}

// telemetryArgs are the sidecar flags of the Telemetry in effect, after skein up's own
// (a later --tracing-sampling wins; --metrics-drop-labels add up).
func telemetryArgs(t model.EffectiveTelemetry, base []string) []string {
	var out []string
	if t.SamplingPercent != nil && slices.Contains(base, "--tracing-exporter") {
		out = append(out, "--tracing-sampling", strconv.FormatFloat(*t.SamplingPercent, 'f', -1, 64))
	}
	if len(t.DropLabels) > 0 {
		out = append(out, "--metrics-drop-labels", strings.Join(t.DropLabels, ","))
	}
	return out
}
