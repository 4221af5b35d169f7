package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/ca"
	"skein.dev/skein/internal/ca/castatus"
	"skein.dev/skein/internal/ca/workloadapi"
	"skein.dev/skein/internal/model"
)

// security is skein up's identity side: the CA (in <state>/ca, or --ca-dir with
// Istio's plug-in files), one bootstrap credential per sidecar written to a 0600 file
// only that sidecar is told about, one SPIFFE Workload API socket per replica, and
// root rotation with overlap.
type security struct {
	ca     *ca.CA
	log    *slog.Logger
	tokens string // <state>/secrets: one 0700 folder per proxy, token file 0600
	wlapi  string // <state>/workload-api: one socket per replica

	mu       sync.Mutex
	issued   map[string]issuedCert // by proxy ID: the last SVID the CA gave it
	servers  map[string]*workloadapi.Server
	rotating sync.Mutex
}

type issuedCert struct {
	id       string
	notAfter time.Time
}

func newSecurity(opts Options, log *slog.Logger) (*security, error) {
	dir := opts.CADir
	if dir == "" {
		dir = filepath.Join(opts.StateDir, "ca")
	}
	s := &security{
		log:     log,
		tokens:  filepath.Join(opts.StateDir, "secrets"),
		wlapi:   filepath.Join(opts.StateDir, "workload-api"),
		issued:  map[string]issuedCert{},
		servers: map[string]*workloadapi.Server{},
	}
	authority, err := ca.LoadOrCreate(dir, ca.Options{
		TrustDomain: opts.TrustDomain,
		WorkloadTTL: opts.CertTTL,
		Logger:      log.With("component", "ca"),
		OnIssued:    s.recordIssued,
	})
	if err != nil {
		return nil, err
	}
	s.ca = authority
	for _, d := range []string{s.tokens, s.wlapi} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// register adds the CSR service to the control plane's gRPC server.
func (s *security) register(r grpc.ServiceRegistrar) { ca.NewServer(s.ca).Register(r) }

func (s *security) meshSecurity() *model.Security {
	return &model.Security{TrustDomain: s.ca.TrustDomain().Name(), RootCertsPEM: string(s.ca.BundlePEM())}
}

func (s *security) recordIssued(proxyID string, svid *ca.SVID) {
	if proxyID == "" {
		return
	}
	s.mu.Lock()
	s.issued[proxyID] = issuedCert{id: svid.ID.String(), notAfter: svid.Leaf.NotAfter}
	s.mu.Unlock()
}

func (s *security) issuedTo(proxyID string) (issuedCert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.issued[proxyID]
	return c, ok
}

// replicaIdentity is what one replica gets: the sidecar's credential file and the
// app's Workload API socket. release undoes it when the replica stops.
type replicaIdentity struct {
	tokenFile string
	socket    string
	release   func()
}

// forReplica issues the sidecar's bootstrap credential (bound to its identity and
// proxy ID), writes it where only the sidecar is pointed, and starts the replica's
// Workload API socket. With an app user (appUID >= 0, see users.go), the socket lives
// in a folder of that user's and only that user (and the runtime) may connect.
func (s *security) forReplica(ctx context.Context, p model.Proxy, appUID int) (*replicaIdentity, error) {
	sa := p.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	cred, err := s.ca.IssueCredential(p.Workload.Namespace, sa, p.ID)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.tokens, p.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(cred.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Chmod(tokenFile, 0o600); err != nil { // an older file keeps its mode
		return nil, err
	}

	srv, err := workloadapi.New(workloadapi.Options{
		CA:       s.ca,
		Identity: ca.Identity{Namespace: p.Workload.Namespace, ServiceAccount: sa},
		Name:     p.ID,
		Logger:   s.log.With("component", "workload-api", "proxy", p.ID),
	})
	if err != nil {
		return nil, err
	}
	socket := s.socketPath(p.ID)
	socketDir := ""
	if appUID >= 0 {
		// The state dir is the runtime's alone: the app's user gets a folder of its own.
		if socketDir, err = os.MkdirTemp("", "skein-wlapi-"); err != nil {
			return nil, err
		}
		socket = filepath.Join(socketDir, "agent.sock")
	}
	ln, err := workloadapi.ListenFor(socket, appUID, appUID)
	if err != nil {
		if socketDir != "" {
			os.RemoveAll(socketDir)
		}
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(wctx, ln); err != nil {
			s.log.Error("workload API stopped", "proxy", p.ID, "err", err)
		}
	}()
	s.mu.Lock()
	s.servers[p.ID] = srv
	s.mu.Unlock()
	release := func() {
		_ = s.ca.RevokeCredential(cred.Token)
		cancel()
		<-done
		_ = os.RemoveAll(dir)
		_ = os.Remove(socket)
		if socketDir != "" {
			_ = os.RemoveAll(socketDir)
		}
		s.mu.Lock()
		delete(s.servers, p.ID)
		delete(s.issued, p.ID)
		delete(s.issued, p.ID+"/workload-api")
		s.mu.Unlock()
	}
	return &replicaIdentity{tokenFile: tokenFile, socket: socket, release: release}, nil
}

// socketPath keeps the socket under the OS limit for Unix socket paths.
func (s *security) socketPath(proxyID string) string {
	p := filepath.Join(s.wlapi, proxyID+".sock")
	if len(p) <= 100 {
		return p
	}
	sum := sha256.Sum256([]byte(proxyID))
	return filepath.Join(s.wlapi, hex.EncodeToString(sum[:6])+".sock")
}

// bundleChanged tells every Workload API stream to send the new bundle.
func (s *security) bundleChanged() {
	s.mu.Lock()
	servers := make([]*workloadapi.Server, 0, len(s.servers))
	for _, srv := range s.servers {
		servers = append(servers, srv)
	}
	s.mu.Unlock()
	for _, srv := range servers {
		srv.BundleChanged()
	}
}

func (s *security) status() api.CAStatus { return castatus.Of(s.ca) }

// CAStatus implements api.CABackend.
func (m *Mesh) CAStatus() api.CAStatus { return m.sec.status() }

// RotateRoot implements api.CABackend: prepare, distribute, wait for every proxy's
// ACK, then switch signing to the new root.
func (m *Mesh) RotateRoot(ctx context.Context) (api.CAStatus, error) {
	s := m.sec
	s.rotating.Lock()
	defer s.rotating.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	if err := s.ca.PrepareRootRotation(); err != nil {
		return s.status(), err
	}
	gen := m.push()
	s.bundleChanged()
	if err := m.xds.WaitAcked(ctx, gen); err != nil {
		return s.status(), fmt.Errorf("the new bundle did not reach every proxy, so the root was not switched (it stays trusted; run rotate-root again): %w", err)
	}
	if err := s.ca.RotateRoot(); err != nil {
		return s.status(), err
	}
	m.push()
	s.bundleChanged()
	m.logger.Info("root rotated; previous root trusted until dropped", "validUntil", s.ca.PreviousRootsValidUntil())
	return s.status(), nil
}

// DropPreviousRoots implements api.CABackend.
func (m *Mesh) DropPreviousRoots(force bool) (api.CAStatus, error) {
	s := m.sec
	s.rotating.Lock()
	defer s.rotating.Unlock()
	if until := s.ca.PreviousRootsValidUntil(); !force && time.Now().Before(until) {
		return s.status(), fmt.Errorf("%w until %s (%s from now): wait, or force it and break them",
			api.ErrRootsInUse, until.Format(time.RFC3339), time.Until(until).Round(time.Second))
	}
	if err := s.ca.DropPreviousRoots(); err != nil {
		return s.status(), err
	}
	m.push()
	s.bundleChanged()
	return s.status(), nil
}

var _ api.CABackend = (*Mesh)(nil)
