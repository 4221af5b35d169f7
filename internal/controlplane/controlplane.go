// Package controlplane is `skein control`: the control plane alone, as istiod is. It
// serves ADS to whatever connects (skein sidecars and gateways started by hand,
// proxyless gRPC clients, Envoy) from a folder of YAML it watches, and runs no
// workload and no proxy: endpoints come from the config itself (WorkloadEntries
// selected by Services, ServiceEntry endpoints).
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/config/watch"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/server"
)

// Options configure a standalone control plane.
type Options struct {
	// ConfigDir holds the mesh's YAML; it is watched for changes.
	ConfigDir string
	// XDSAddress serves ADS (and the CA's CSR service) in plaintext, as istiod's 15010.
	XDSAddress string
	// APIAddress serves the local API (status); none when empty.
	APIAddress string
	// MonitoringAddress serves the control plane's /metrics; none when empty.
	MonitoringAddress string

	// CADir holds the CA's files (Istio's plug-in files are used when there); an
	// ephemeral folder, removed at exit, when empty.
	CADir string
	// CertTTL is the workload certificate lifetime; 24h when zero.
	CertTTL time.Duration
	// TrustDomain of workload SPIFFE IDs; cluster.local when empty.
	TrustDomain string
	// RootNamespace is Istio's meshConfig.rootNamespace; istio-system when empty.
	RootNamespace string
	// Mesh-wide capture settings (see model.Mesh); zero values are the defaults.
	OutboundTrafficPolicy    model.OutboundTrafficPolicy
	ProtocolDetectionTimeout time.Duration

	Logger *slog.Logger
	// Out receives the human-facing progress lines.
	Out io.Writer
}

// ControlPlane is a running standalone control plane.
type ControlPlane struct {
	opts     Options
	log      *slog.Logger
	xds      *server.Server
	ca       *ca.CA
	shutdown context.CancelFunc

	xdsAddr, apiAddr, monitoringAddr string

	mu         sync.Mutex
	cfg        *model.Mesh // last good config
	cfgGen     int64
	cfgErrors  []string
	cfgErrorAt time.Time
	pushGen    int64
	// issued is the last certificate the CA gave each proxy ID, for status.
	issued map[string]issuedCert

	rotating sync.Mutex // one root rotation step at a time (ca.go)
}

type issuedCert struct {
	id       string
	notAfter time.Time
}

// Run loads the config (it must be valid), serves until ctx is done, and then stops.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	var err error
	if opts.ConfigDir, err = filepath.Abs(opts.ConfigDir); err != nil {
		return err
	}
	cfg, err := config.Load(opts.ConfigDir)
	if err != nil {
		return fmt.Errorf("config in %s is invalid:\n%w", opts.ConfigDir, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cp := &ControlPlane{opts: opts, log: opts.Logger, shutdown: cancel, cfg: cfg, cfgGen: 1, issued: map[string]issuedCert{}}

	caDir := opts.CADir
	if caDir == "" {
		if caDir, err = os.MkdirTemp("", "skein-control-ca-"); err != nil {
			return err
		}
		defer os.RemoveAll(caDir)
		cp.log.Info("no --ca-dir: the CA's root is ephemeral (new at every start)", "dir", caDir)
	}
	cp.ca, err = ca.LoadOrCreate(caDir, ca.Options{
		TrustDomain: opts.TrustDomain,
		WorkloadTTL: opts.CertTTL,
		Logger:      cp.log.With("component", "ca"),
		OnIssued:    cp.recordIssued,
	})
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	cp.xds = server.New(server.Options{
		Logger:   cp.log.With("component", "xds"),
		Register: func(r grpc.ServiceRegistrar) { ca.NewServer(cp.ca).Register(r) },
	})

	// Listen on everything first, so a busy port fails the start, not a goroutine.
	xdsLis, err := net.Listen("tcp", opts.XDSAddress)
	if err != nil {
		return fmt.Errorf("--xds-address: %w", err)
	}
	cp.xdsAddr = xdsLis.Addr().String()
	var apiLis, monLis net.Listener
	if opts.APIAddress != "" {
		if apiLis, err = net.Listen("tcp", opts.APIAddress); err != nil {
			xdsLis.Close()
			return fmt.Errorf("--api-address: %w", err)
		}
		cp.apiAddr = apiLis.Addr().String()
	}
	if opts.MonitoringAddress != "" {
		if monLis, err = net.Listen("tcp", opts.MonitoringAddress); err != nil {
			xdsLis.Close()
			if apiLis != nil {
				apiLis.Close()
			}
			return fmt.Errorf("--monitoring-address: %w", err)
		}
		cp.monitoringAddr = monLis.Addr().String()
	}

	var wg sync.WaitGroup
	goFn := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goFn(func() {
		if err := cp.xds.Serve(ctx, xdsLis); err != nil {
			cp.log.Error("xds server stopped", "err", err)
			cancel()
		}
	})
	if apiLis != nil {
		goFn(func() { _ = api.Serve(ctx, apiLis, cp, cp.log) })
	}
	if monLis != nil {
		goFn(func() { serveMonitoring(ctx, monLis, cp.xds, cp.log) })
	}
	cp.push()
	fmt.Fprintf(opts.Out, "skein control: config %s, xDS %s", opts.ConfigDir, cp.xdsAddr)
	if cp.apiAddr != "" {
		fmt.Fprintf(opts.Out, ", API %s", cp.apiAddr)
	}
	if cp.monitoringAddr != "" {
		fmt.Fprintf(opts.Out, ", metrics http://%s/metrics", cp.monitoringAddr)
	}
	fmt.Fprintf(opts.Out, ", %d workload entries\n", len(cfg.WorkloadEntries))
	goFn(func() {
		err := watch.Dir(ctx, opts.ConfigDir, 150*time.Millisecond, cp.log, cp.reload)
		if err != nil {
			cp.log.Error("file watch failed; edits will not apply", "err", err)
		}
	})

	<-ctx.Done()
	fmt.Fprintln(opts.Out, "skein control: stopping")
	cancel()
	wg.Wait()
	return nil
}

// reload loads the config dir again; a bad edit is reported and the old config stays,
// exactly as in skein up.
func (cp *ControlPlane) reload() {
	cfg, err := config.Load(cp.opts.ConfigDir)
	if err != nil {
		lines := watch.ErrorLines(err)
		cp.mu.Lock()
		cp.cfgErrors, cp.cfgErrorAt = lines, time.Now()
		cp.mu.Unlock()
		cp.xds.ConfigRejected()
		watch.ReportRejected(cp.log, cp.opts.Out, lines)
		return
	}
	cp.mu.Lock()
	cp.cfg, cp.cfgErrors, cp.cfgErrorAt = cfg, nil, time.Time{}
	cp.cfgGen++
	gen := cp.cfgGen
	cp.mu.Unlock()
	cp.xds.ConfigAccepted()
	cp.log.Info("config accepted", "generation", gen)
	fmt.Fprintf(cp.opts.Out, "config accepted (generation %d)\n", gen)
	cp.push()
}

// push sends the current config, its WorkloadEntries as the registry and the CA's
// trust bundle to the xDS server, and returns the generation pushed.
func (cp *ControlPlane) push() int64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.pushGen++
	mesh := *cp.cfg
	mesh.Generation = cp.pushGen
	mesh.Endpoints = model.WorkloadEntryEndpoints(cp.cfg)
	mesh.OutboundTrafficPolicy = cp.opts.OutboundTrafficPolicy
	mesh.ProtocolDetectionTimeout = cp.opts.ProtocolDetectionTimeout
	mesh.Security = &model.Security{TrustDomain: cp.ca.TrustDomain().Name(), RootCertsPEM: string(cp.ca.BundlePEM())}
	mesh.RootNamespace = cp.opts.RootNamespace
	cp.xds.Update(&mesh)
	return cp.pushGen
}

func (cp *ControlPlane) recordIssued(proxyID string, svid *ca.SVID) {
	if proxyID == "" {
		return
	}
	cp.mu.Lock()
	cp.issued[proxyID] = issuedCert{id: svid.ID.String(), notAfter: svid.Leaf.NotAfter}
	cp.mu.Unlock()
}

// IssueCredential implements api.CredentialBackend: a bootstrap credential for a
// proxy started by hand, bound to its identity and proxy ID, as skein up gives each
// sidecar it starts.
func (cp *ControlPlane) IssueCredential(req api.CredentialRequest) (api.Credential, error) {
	if req.ProxyID == "" {
		return api.Credential{}, errors.New("proxyID is required: the credential is bound to the proxy's xDS node id")
	}
	if req.Namespace == "" {
		req.Namespace = "default"
	}
	if req.ServiceAccount == "" {
		req.ServiceAccount = "default"
	}
	cred, err := cp.ca.IssueCredential(req.Namespace, req.ServiceAccount, req.ProxyID)
	if err != nil {
		return api.Credential{}, err
	}
	return api.Credential{Token: cred.Token, SPIFFEID: cred.SPIFFEID.String(), ProxyID: req.ProxyID}, nil
}

// XDSAddress is where ADS is served.
func (cp *ControlPlane) XDSAddress() string { return cp.xdsAddr }

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
