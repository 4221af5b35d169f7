// Package workloadapi serves the SPIFFE Workload API (spiffe.workload.SpiffeWorkloadAPI,
// the proto go-spiffe ships) for one workload over a Unix socket, so an application
// using go-spiffe's workloadapi gets its own X.509 SVID and the trust bundle without
// knowing about skein. Each server stands for exactly one identity: skein up gives each
// workload replica its own socket (attestation is by socket: only that replica is told
// its path, the socket is 0600 in a 0700 directory, and connections from other users
// are refused by SO_PEERCRED). The server obtains SVIDs from the CA like a sidecar does,
// with its own bootstrap credential, and keeps them fresh: streams receive a new SVID
// at half its lifetime and a new bundle whenever the CA's bundle changes.
//
// FetchX509SVID and FetchX509Bundles are implemented; the JWT methods answer
// Unimplemented.
package workloadapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"skein.dev/skein/internal/ca"
)

// SecurityHeader is the metadata every Workload API request must carry (SPIFFE
// Workload Endpoint spec): it keeps browsers and SSRF-driven clients out.
const SecurityHeader = "workload.spiffe.io"

// Options configure a Server.
type Options struct {
	CA *ca.CA
	// Identity is the one identity this socket serves.
	Identity ca.Identity
	// Name labels the server in logs and the credential binding (the replica's proxy ID).
	Name   string
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server is one workload's Workload API endpoint.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	opts  Options
	id    spiffeid.ID
	token string

	mu      sync.Mutex
	svid    *workload.X509SVID // current, nil until first issued
	expires time.Time
	renewAt time.Time
	changed chan struct{} // closed and replaced on every SVID or bundle change
	started bool
	closed  bool
	ctx     context.Context // Serve's; renewals end with it
	wg      sync.WaitGroup
}

// New creates a server and its credential; call Serve to accept connections.
func New(opts Options) (*Server, error) {
	if opts.CA == nil {
		return nil, errors.New("workloadapi: CA is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	id, err := opts.CA.SPIFFEID(opts.Identity)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	cred, err := opts.CA.IssueCredential(opts.Identity.Namespace, opts.Identity.ServiceAccount, opts.Name+"/workload-api")
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	return &Server{opts: opts, id: id, token: cred.Token, changed: make(chan struct{})}, nil
}

// ID is the SPIFFE ID this server hands out.
func (s *Server) ID() spiffeid.ID { return s.id }

// Serve serves the Workload API on lis until ctx ends, then stops and revokes the
// server's credential.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(s.checkHeader), grpc.ChainUnaryInterceptor(s.checkHeaderUnary))
	workload.RegisterSpiffeWorkloadAPIServer(gs, s)
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.closed = true
		close(s.changed) // wake streams so they end
		s.changed = make(chan struct{})
		s.mu.Unlock()
		gs.Stop()
	})
	defer stop()
	err := gs.Serve(lis)
	cancel()
	s.wg.Wait()
	_ = s.opts.CA.RevokeCredential(s.token)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("workloadapi: %w", err)
	}
	return nil
}

// BundleChanged tells every open stream to send the CA's current bundle.
func (s *Server) BundleChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svid != nil {
		s.svid.Bundle = derConcat(s.opts.CA.Bundle())
	}
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) checkHeader(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := securityHeader(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (s *Server) checkHeaderUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := securityHeader(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func securityHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(SecurityHeader); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// FetchX509SVID streams the workload's SVID, again after every renewal or bundle change.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if err := s.ensureStarted(stream.Context()); err != nil {
		return err
	}
	return s.watch(stream.Context(), func(svid *workload.X509SVID) error {
		return stream.Send(&workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}})
	})
}

// FetchX509Bundles streams the trust bundle of the mesh's trust domain.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	if err := s.ensureStarted(stream.Context()); err != nil {
		return err
	}
	return s.watch(stream.Context(), func(svid *workload.X509SVID) error {
		return stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{s.id.TrustDomain().IDString(): svid.Bundle}})
	})
}

// watch sends the current SVID now and after each change, until the stream ends.
func (s *Server) watch(ctx context.Context, send func(*workload.X509SVID) error) error {
	for {
		s.mu.Lock()
		svid, changed, closed := s.svid, s.changed, s.closed
		s.mu.Unlock()
		if closed {
			return status.Error(codes.Unavailable, "workload API shutting down")
		}
		if svid != nil {
			if err := send(svid); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// ensureStarted issues the first SVID (on the first request) and starts renewals.
func (s *Server) ensureStarted(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	svid, notBefore, notAfter, err := s.issue(ctx)
	if err != nil {
		s.opts.Logger.Warn("workload API: issuing SVID failed", "workload", s.opts.Name, "error", err)
		return status.Error(codes.Unavailable, "no SVID available yet")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil // another stream won
	}
	s.started = true
	s.install(svid, notBefore, notAfter)
	renewCtx := s.ctx
	s.wg.Go(func() { s.renewLoop(renewCtx) })
	return nil
}

func (s *Server) install(svid *workload.X509SVID, notBefore, notAfter time.Time) {
	s.svid = svid
	s.expires = notAfter
	s.renewAt = notBefore.Add(notAfter.Sub(notBefore) / 2)
	s.notifyLocked()
}

func (s *Server) renewLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		wait := s.renewAt.Sub(s.opts.Now())
		s.mu.Unlock()
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		svid, nb, na, err := s.issue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.opts.Logger.Warn("workload API: renewing SVID failed", "workload", s.opts.Name, "error", err)
			s.mu.Lock()
			s.renewAt = s.opts.Now().Add(backoff/2 + mrand.N(backoff/2+1))
			s.mu.Unlock()
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.mu.Lock()
		s.install(svid, nb, na)
		s.mu.Unlock()
	}
}

// issue makes a key, signs a CSR for the identity with the server's credential, and
// packs the Workload API message.
func (s *Server) issue(ctx context.Context) (*workload.X509SVID, time.Time, time.Time, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{s.id.URL()}}, key)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	svid, err := s.opts.CA.Sign(ctx, ca.SignRequest{
		CSR:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
		Identity:   s.opts.Identity,
		Credential: s.token,
		ProxyID:    s.opts.Name + "/workload-api",
	})
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	return &workload.X509SVID{
		SpiffeId:    svid.ID.String(),
		X509Svid:    derConcat(svid.Chain),
		X509SvidKey: keyDER,
		Bundle:      derConcat(s.opts.CA.Bundle()),
	}, svid.Leaf.NotBefore, svid.Leaf.NotAfter, nil
}

func derConcat(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
