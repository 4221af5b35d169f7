// Package local is `skein up`: the whole mesh on one machine. It runs the control plane
// (config watch → model → xDS server), starts one sidecar per workload replica and each
// workload's process, feeds the replicas' endpoints to the control plane as the
// registry, and serves the local API used by status, exec and down.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/config/watch"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/statedir"
	"skein.dev/skein/internal/xds/server"
)

// Options configure a local mesh.
type Options struct {
	// ConfigDir holds the mesh's YAML; it is watched for changes.
	ConfigDir string
	// StateDir holds the instance record and logs.
	StateDir string
	// Isolation is auto, none or netns.
	Isolation string
	// Self is the path of the skein binary, run for sidecars and for commands whose
	// first word is "skein".
	Self string
	// ProxyBinary, when set, is the lean sidecar binary (cmd/skein-proxy, same flags as
	// `skein proxy`) that sidecars and gateways run; empty runs `Self proxy`. See
	// ResolveProxyBinary.
	ProxyBinary string
	Logger      *slog.Logger
	// Out receives the human-facing progress lines.
	Out io.Writer
	// XDSOverride, when set, lets tests replace what a node is served (see
	// server.Server.Override); nil in production.
	OnServer func(*server.Server)

	// PodCIDR is where isolation netns takes pod addresses; podnet.DefaultCIDR when
	// not valid.
	PodCIDR netip.Prefix
	// OutboundTrafficPolicy and ProtocolDetectionTimeout are the mesh-wide capture
	// settings (see model.Mesh); zero values are the defaults.
	OutboundTrafficPolicy    model.OutboundTrafficPolicy
	ProtocolDetectionTimeout time.Duration
	// CADir holds the CA's files; <StateDir>/ca when empty. Put Istio's plug-in files
	// (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) there to reuse a CA.
	CADir string
	// CertTTL is the workload certificate lifetime; 24h when zero.
	CertTTL time.Duration
	// TrustDomain of workload SPIFFE IDs; cluster.local when empty.
	TrustDomain string
	// RootNamespace is Istio's meshConfig.rootNamespace; istio-system when empty.
	RootNamespace string
	// ProxyArgs are extra flags for every sidecar (tracing, metric label drops).
	ProxyArgs []string
	// NoAccessLogs turns off the per-sidecar access log <state>/logs/<proxy>.access.log.
	NoAccessLogs bool
	// SharedUser runs every sidecar and app as skein up's user even as root (by
	// default, root gives each replica's sidecar and app users of their own: users.go).
	SharedUser bool
	// Dashboard, when set, is served on an allocated loopback port (shown in status).
	Dashboard func(ctx context.Context, ln net.Listener, b api.Backend) error
}

// Mesh is a running local mesh.
type Mesh struct {
	opts    Options
	logger  *slog.Logger
	xds     *server.Server
	sec     *security
	xdsAddr string
	// monitoringAddr serves the control plane's /metrics; dashboardAddr the dashboard.
	monitoringAddr, dashboardAddr string
	shutdown                      context.CancelFunc

	// pods is the pod network in isolation netns, nil otherwise; podXDS is the
	// control plane's address as pods reach it (on the bridge).
	pods   *podnet.Network
	podXDS string

	mu            sync.Mutex
	cfg           *model.Mesh // last good config
	cfgAcceptedAt time.Time   // when cfg was loaded
	// condTimes are the Gateway API status conditions' transition times, for config
	// generation condGen (gateway.go).
	condTimes    map[string]transition
	condGen      int64
	cfgGen       int64
	cfgErrors    []string
	cfgErrorAt   time.Time
	workloads    map[model.NamespacedName]*workloadRun
	pushGen      int64
	pushedHealth map[string]bool

	// separateUsers: replicas run under users of their own (users.go).
	separateUsers bool
	userSeq       atomic.Int64
}

// ResolveIsolation picks the isolation mode. auto is netns when it can work here (root
// with `ip` and iptables), else none with a one-line reason; netns where it cannot
// work is an error saying why.
func ResolveIsolation(mode string) (string, string, error) {
	switch mode {
	case "", "auto":
		if why := netnsUnavailable(); why != "" {
			return "none", why + "; using isolation none (everything on 127.0.0.1, apps use HTTP_PROXY)", nil
		}
		return "netns", "netns (each replica a pod: own network namespace, traffic captured by iptables)", nil
	case "none":
		return "none", "", nil
	case "netns":
		if why := netnsUnavailable(); why != "" {
			return "", "", fmt.Errorf("--isolation netns: %s; use --isolation none", why)
		}
		return "netns", "", nil
	default:
		return "", "", fmt.Errorf("--isolation %q: want auto, none or netns", mode)
	}
}

// Run starts the mesh and blocks until ctx is done or `skein down` asks it to stop;
// then it stops every process it started.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	isolation, reason, err := ResolveIsolation(opts.Isolation)
	if err != nil {
		return err
	}
	if reason != "" {
		fmt.Fprintln(opts.Out, "isolation:", reason)
	}
	opts.Isolation = isolation
	if opts.ConfigDir, err = filepath.Abs(opts.ConfigDir); err != nil {
		return err
	}
	cfg, err := config.Load(opts.ConfigDir)
	if err != nil {
		return fmt.Errorf("config in %s is invalid:\n%w", opts.ConfigDir, err)
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "logs"), 0o700); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &Mesh{
		separateUsers: !opts.SharedUser && separateUsersPossible(),
		opts:          opts,
		logger:        opts.Logger,
		shutdown:      cancel,
		cfg:           cfg,
		cfgAcceptedAt: time.Now(),
		cfgGen:        1,
		workloads:     map[model.NamespacedName]*workloadRun{},
		pushedHealth:  map[string]bool{},
	}
	if m.sec, err = newSecurity(opts, opts.Logger); err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	m.xds = server.New(server.Options{Logger: opts.Logger.With("component", "xds"), Register: m.sec.register,
		ObservedFile: filepath.Join(opts.StateDir, "observed-scope.json")})
	if opts.OnServer != nil {
		opts.OnServer(m.xds)
	}

	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m.xdsAddr = xdsLis.Addr().String()
	apiLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	inst := statedir.Instance{Pid: os.Getpid(), API: apiLis.Addr().String(), XDS: m.xdsAddr,
		ConfigDir: opts.ConfigDir, Isolation: isolation, StartedAt: time.Now()}
	if err := statedir.Claim(opts.StateDir, inst); err != nil {
		return err
	}
	defer statedir.Release(opts.StateDir, inst.Pid)
	if isolation == "netns" {
		// After Claim: the pod network's recovery removes what a previous instance of
		// this state dir left, which must not be a live one.
		stop, err := m.setupPodNetwork(ctx, cfg.Suffix(), &xdsLis)
		if err != nil {
			return err
		}
		defer stop()
	}
	monLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m.monitoringAddr = monLis.Addr().String()
	var dashLis net.Listener
	if opts.Dashboard != nil {
		if dashLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		m.dashboardAddr = dashLis.Addr().String()
	}
	var wg sync.WaitGroup
	goFn := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goFn(func() { serveMonitoring(ctx, monLis, m.xds, m.logger) })
	if dashLis != nil {
		goFn(func() {
			if err := opts.Dashboard(ctx, dashLis, m); err != nil {
				m.logger.Error("dashboard stopped", "err", err)
			}
		})
	}
	goFn(func() {
		if err := m.xds.Serve(ctx, xdsLis); err != nil {
			m.logger.Error("xds server stopped", "err", err)
			cancel()
		}
	})
	goFn(func() { _ = api.Serve(ctx, apiLis, m, m.logger) })

	m.push()
	m.reconcile(ctx)
	fmt.Fprintf(opts.Out, "skein up: config %s, xDS %s, API %s, control-plane metrics http://%s/metrics, logs %s\n", opts.ConfigDir, m.xdsAddr, inst.API, m.monitoringAddr, filepath.Join(opts.StateDir, "logs"))
	if m.dashboardAddr != "" {
		fmt.Fprintf(opts.Out, "dashboard: http://%s/\n", m.dashboardAddr)
	}
	m.printWorkloads()

	goFn(func() { m.probeLoop(ctx) })
	goFn(func() {
		err := watch.Dir(ctx, opts.ConfigDir, 150*time.Millisecond, m.logger, func() { m.reload(ctx) })
		if err != nil {
			m.logger.Error("file watch failed; edits will not apply", "err", err)
		}
	})

	<-ctx.Done()
	fmt.Fprintln(opts.Out, "skein up: stopping")
	m.stopAll()
	cancel()
	wg.Wait()
	return nil
}

// reload loads the config dir again; a bad edit is reported and the old config stays.
func (m *Mesh) reload(ctx context.Context) {
	cfg, err := config.Load(m.opts.ConfigDir)
	if err != nil {
		lines := watch.ErrorLines(err)
		m.mu.Lock()
		m.cfgErrors, m.cfgErrorAt = lines, time.Now()
		m.mu.Unlock()
		m.xds.ConfigRejected()
		watch.ReportRejected(m.logger, m.opts.Out, lines)
		return
	}
	m.mu.Lock()
	m.cfg, m.cfgErrors, m.cfgErrorAt = cfg, nil, time.Time{}
	m.cfgAcceptedAt = time.Now()
	m.cfgGen++
	gen := m.cfgGen
	m.transitionsLocked()
	m.mu.Unlock()
	m.xds.ConfigAccepted()
	m.logger.Info("config accepted", "generation", gen)
	fmt.Fprintf(m.opts.Out, "config accepted (generation %d)\n", gen)
	m.reconcile(ctx)
	m.push()
}

// push sends the current config plus registry endpoints and the CA's trust bundle to
// the control plane, and returns the generation pushed.
func (m *Mesh) push() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pushGen++
	mesh := *m.cfg
	mesh.Generation = m.pushGen
	mesh.Endpoints = m.endpointsLocked()
	mesh.OutboundTrafficPolicy = m.opts.OutboundTrafficPolicy
	mesh.ProtocolDetectionTimeout = m.opts.ProtocolDetectionTimeout
	mesh.Security = m.sec.meshSecurity()
	mesh.RootNamespace = m.opts.RootNamespace
	m.xds.Update(&mesh)
	return m.pushGen
}

func (m *Mesh) endpointsLocked() []model.Endpoint {
	var eps []model.Endpoint
	for _, w := range m.sortedWorkloadsLocked() {
		if w.spec.Role == model.RoleGateway {
			eps = append(eps, m.gatewayEndpointsLocked(w)...)
			continue
		}
		for _, r := range w.replicas {
			healthy := r.healthy.Load()
			for _, cp := range w.spec.Ports {
				port := r.proxy.InboundPorts[cp.ContainerPort]
				if r.pod != nil {
					port = cp.ContainerPort // captured by the pod's rules, like a pod IP:port
				}
				eps = append(eps, model.Endpoint{
					Workload:   w.spec.NamespacedName,
					Replica:    r.index,
					Labels:     w.spec.Labels,
					Address:    r.proxy.IP,
					Port:       port,
					TargetPort: cp.ContainerPort,
					Healthy:    healthy,
					Sidecar:    true, // every replica has one: mesh mTLS (auto-mTLS) applies
				})
			}
		}
	}
	// Workloads run outside skein up, declared by WorkloadEntries.
	return append(eps, model.WorkloadEntryEndpoints(m.cfg)...)
}

func (m *Mesh) sortedWorkloadsLocked() []*workloadRun {
	out := make([]*workloadRun, 0, len(m.workloads))
	for _, w := range m.workloads {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].spec.NamespacedName, out[j].spec.NamespacedName
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

func (m *Mesh) printWorkloads() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.sortedWorkloadsLocked() {
		for _, r := range w.replicas {
			if r.proxy.Role == model.RoleGateway {
				fmt.Fprintf(m.opts.Out, "  %-28s gateway %s  admin %s\n", r.proxy.ID, gatewaySockets(m.cfg, r.proxy), r.adminAddr())
				continue
			}
			fmt.Fprintf(m.opts.Out, "  %-28s app :%d  sidecar in %s  admin %s\n", r.proxy.ID, r.appPort(), r.inboundAddr(), r.adminAddr())
		}
	}
}

// probeLoop marks replicas healthy when their app port accepts connections and their
// sidecar is ready, and pushes endpoint changes.
func (m *Mesh) probeLoop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var reps []*replicaRun
		for _, w := range m.workloads {
			reps = append(reps, w.replicas...)
		}
		m.mu.Unlock()
		changed := false
		for _, r := range reps {
			h := r.probe(ctx)
			if r.healthy.Swap(h) != h {
				changed = true
			}
		}
		if changed {
			m.push()
		}
	}
}

// Shutdown implements api.Backend.
func (m *Mesh) Shutdown() { m.shutdown() }

// serveMonitoring serves the control plane's metrics (Istio's :15014 /metrics).
func serveMonitoring(ctx context.Context, ln net.Listener, xds *server.Server, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", xds.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("monitoring server", "err", err)
	}
}
