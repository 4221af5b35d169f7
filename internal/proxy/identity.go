package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/identity"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/xdsclient"
)

// startIdentity starts the workload certificate manager when the options ask for one.
// The CSR goes to the control plane's address (the CA service shares its gRPC server).
func startIdentity(ctx context.Context, opts Options, log *slog.Logger) (*identity.Manager, func(), error) {
	if opts.Identity == nil {
		return nil, func() {}, nil
	}
	id, err := workloadID(opts)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(opts.XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: CA client for %s: %w", opts.XDSAddress, err)
	}
	mgr, err := identity.New(identity.Options{
		Conn:      conn,
		TokenFile: opts.Identity.TokenFile,
		ProxyID:   opts.Node.ID,
		ID:        id,
		TTL:       opts.Identity.TTL,
		Logger:    log.With("component", "identity"),
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = mgr.Run(ctx) })
	return mgr, func() { cancel(); wg.Wait(); conn.Close() }, nil
}

// certsStatus is the admin /certs answer: the workload certificate and the trust
// bundles received over SDS.
func certsStatus(id *identity.Manager, status func() *xdsclient.Status) func() admin.Certs {
	return func() admin.Certs {
		var out admin.Certs
		if id != nil {
			st := id.Status()
			out.Workload = &st
		}
		if s := status(); s != nil {
			if ts, ok := s.Types[resource.SecretType]; ok {
				out.BundleVersion = ts.Version
				for name := range ts.Resources {
					out.Bundles = append(out.Bundles, name)
				}
			}
		}
		return out
	}
}

// workloadID is the SPIFFE ID the proxy requests: spiffe://<td>/ns/<ns>/sa/<sa>.
func workloadID(opts Options) (spiffeid.ID, error) {
	td := opts.Identity.TrustDomain
	if td == "" {
		td = model.DefaultTrustDomain
	}
	sa := opts.Node.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	tdom, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("proxy: trust domain %q: %w", td, err)
	}
	id, err := spiffeid.FromSegments(tdom, "ns", opts.Node.Workload.Namespace, "sa", sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("proxy: workload identity: %w", err)
	}
	return id, nil
}
