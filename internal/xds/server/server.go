// Package server serves translated xDS resources to proxies with go-control-plane's
// gRPC server: one snapshot per node, built by internal/xds/translate, checked with
// Consistent() and set in the server's own cache (wirecache.go), which marshals each
// shared resource once per mesh generation and resends only the types that changed. It learns nodes from their first request, tracks
// ACKs and NACKs per type, and debounces configuration updates. See ../README.md.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/scopeapi"
	"skein.dev/skein/internal/xds/translate"
)

// DefaultDebounce is how long Update waits for a quiet period before pushing.
const DefaultDebounce = 100 * time.Millisecond

// ProxyMetadataKey is the node.metadata key holding the JSON of model.Proxy.
const ProxyMetadataKey = "SKEIN_PROXY"

// ErrInconsistentSnapshot wraps Consistent() failures: such a snapshot is never set.
var ErrInconsistentSnapshot = errors.New("inconsistent snapshot")

// Options configures a Server.
type Options struct {
	Logger *slog.Logger
	// Debounce coalesces bursts of Update calls; DefaultDebounce when zero. A burst is
	// pushed after Debounce without a new Update, and at the latest after 10×Debounce.
	Debounce time.Duration
	// Now is the clock for status timestamps; time.Now when nil.
	Now func() time.Time
	// Register, optional, adds more services to the gRPC server Serve runs (the CA's
	// CSR service shares it with xDS).
	Register func(grpc.ServiceRegistrar)
	// ObservedFile, optional, keeps the scope inferred from traffic across restarts.
	ObservedFile string
}

// ProxyStatus is what the control plane knows about one node.
type ProxyStatus struct {
	ID string
	// Proxy is the decoded SKEIN_PROXY metadata; nil for generic clients.
	Proxy       *model.Proxy
	Connected   bool
	ConnectedAt time.Time
	// Version identifies the node's whole snapshot: "<generation>-<content hash>" of
	// the push that last changed it.
	Version string
	// Versions maps a type short name (LDS, RDS, CDS, EDS, SDS) to the version of that
	// type in the node's snapshot: "<generation>-<hash of the type's content>", from
	// the generation where that content appeared (types that did not change are not
	// resent, and keep their version).
	Versions map[string]string
	// Acked maps a type short name (LDS, RDS, CDS, EDS) to its last ACKed version.
	Acked map[string]string
	// NACK is the last unresolved NACK: nil after that type ACKs the newest version.
	NACK *NACK
	// InSync: every type the node subscribed to has ACKed its version in Versions.
	InSync bool
	// Error is the last translation or consistency error for this node (the previous
	// snapshot stays in place); empty after the next successful build.
	Error string
}

// NACK is a rejected response.
type NACK struct {
	TypeURL, Version, Message string
	At                        time.Time
}

// Server is the xDS management server.
type Server struct {
	log      *slog.Logger
	debounce time.Duration
	now      func() time.Time
	cache    *wireCache
	xds      serverv3.Server
	kick     chan struct{} // capacity 1: "a new mesh is waiting"
	metrics  *metrics
	register func(grpc.ServiceRegistrar)

	// pushMu serialises translate+SetSnapshot, so a node's versions never go backwards.
	// It is never taken while holding mu.
	pushMu sync.Mutex
	push   pushCache // guarded by pushMu

	mu   sync.Mutex
	mesh *model.Mesh
	// meshAt is when the oldest not yet pushed Update arrived (push latency).
	meshAt  time.Time
	nodes   map[string]*nodeState
	streams map[streamKey]*streamState
	lastErr error
	pushes  int // debounced push rounds, for tests
	// pushedGeneration is the mesh generation of the last push round, for tests.
	pushedGeneration int64
	// appliedGeneration is set once every node's snapshot for it is set.
	appliedGeneration int64
	// observed: per workload, the hosts its proxies were seen using (observed.go),
	// saved to observedFile when set (dirty: last-used times not saved yet).
	observed      map[model.NamespacedName]map[string]observedHost
	observedFile  string
	observedDirty bool
}

type nodeState struct {
	id          string
	proxy       *model.Proxy
	metadata    string // raw SKEIN_PROXY, to notice a proxy restarted with new ports
	streams     int
	connectedAt time.Time
	version     string
	hash        string
	versions    map[string]string // type short name -> version in the snapshot
	snap        wireSnapshot      // the snapshot set in the cache
	acked       map[string]string
	subscribed  map[string]bool
	nack        *NACK
	err         error
	pinned      bool // Override in effect: updates leave the node alone
	// listeners are the listener names a generic client asked for (proxyless gRPC
	// dial targets), sorted; its snapshot holds exactly those (translate.ForClient).
	listeners []string
}

type streamKey struct {
	delta bool // delta and SotW streams are numbered independently
	id    int64
}

type streamState struct {
	nodeID string
	sent   map[string]sentResponse // by type URL: the last response on this stream
	// alias, when set, is the node a generic client's extra stream is served as
	// (streamNode): its node id plus the stream, with that id's own snapshot.
	alias *core.Node
}

type sentResponse struct{ nonce, version string }

// New builds a Server. The xDS handlers live as long as the gRPC server they are
// registered on; call Run (Serve does) to process Updates.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		log:      opts.Logger,
		debounce: opts.Debounce,
		now:      opts.Now,
		kick:     make(chan struct{}, 1),
		register: opts.Register,
		nodes:    map[string]*nodeState{},
		streams:  map[streamKey]*streamState{},
	}
	s.metrics = newMetrics(s)
	if opts.ObservedFile != "" {
		s.observedFile = opts.ObservedFile
		var err error
		if s.observed, err = loadObserved(opts.ObservedFile); err != nil {
			s.log.Warn("inferred scope not restored", "err", err)
		}
	}
	s.cache = newWireCache(opts.Logger)
	// The handlers' context only bounds the handlers' own goroutines; streams end when
	// the gRPC server stops.
	s.xds = serverv3.NewServer(context.Background(), s.cache, callbacks{s})
	return s
}

// Register adds ADS and the per-type discovery services to a gRPC server.
func (s *Server) Register(gs *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, s.xds)
	scopeapi.Register(gs, scopeObserver{s})
}

// Serve runs its own gRPC server on lis and the Run loop until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gs := grpc.NewServer()
	s.Register(gs)
	if s.register != nil {
		s.register(gs)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.Run(ctx) }()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		gs.Stop() // not GracefulStop: ADS streams never end on their own
	}()
	err := gs.Serve(lis)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds server: %w", err)
	}
	return nil
}

// Update hands over a new mesh. Every known node gets a new snapshot after the debounce.
func (s *Server) Update(mesh *model.Mesh) {
	s.mu.Lock()
	s.mesh = mesh
	if s.meshAt.IsZero() {
		s.meshAt = s.now()
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a push is already pending; it will read the newest mesh
	}
}

// Run pushes Updates to all nodes, debounced, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	sweep := time.NewTicker(observedSweep)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			s.expireObserved()
			continue
		case <-s.kick:
		}
		if !s.waitQuiet(ctx) {
			return
		}
		s.pushAll()
	}
}

// waitQuiet waits until no Update came for one debounce period, or 10 periods passed.
func (s *Server) waitQuiet(ctx context.Context) bool {
	deadline := time.NewTimer(10 * s.debounce)
	defer deadline.Stop()
	quiet := time.NewTimer(s.debounce)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.kick:
			quiet.Reset(s.debounce)
		case <-quiet.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}

// LastError returns the last control-plane error (translation or inconsistent
// snapshot) of the latest push round, or nil.
func (s *Server) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Status reports every node seen, sorted by ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		st := ProxyStatus{
			ID:          n.id,
			Proxy:       n.proxy,
			Connected:   n.streams > 0,
			ConnectedAt: n.connectedAt,
			Version:     n.version,
			Versions:    make(map[string]string, len(n.versions)),
			Acked:       make(map[string]string, len(n.acked)),
			InSync:      n.version != "" && len(n.subscribed) > 0,
		}
		for k, v := range n.acked {
			st.Acked[k] = v
		}
		for k, v := range n.versions {
			st.Versions[k] = v
		}
		for t := range n.subscribed {
			if n.acked[t] != n.versions[t] {
				st.InSync = false
			}
		}
		if n.nack != nil {
			nack := *n.nack
			st.NACK = &nack
		}
		if n.err != nil {
			st.Error = n.err.Error()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Override pins a node to the given resources (which need not come from the
// translator, e.g. to test how a proxy NACKs unsupported fields); Updates leave it
// alone until Override(nodeID, nil) releases it. The snapshot must still be Consistent.
func (s *Server) Override(nodeID string, res *translate.Resources) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	n := s.nodeLocked(nodeID)
	n.pinned = res != nil
	s.mu.Unlock()
	if res == nil {
		return s.pushNodeLocked(nodeID)
	}
	return s.setResources(nodeID, "override", res)
}

// nodeLocked returns the node's state, creating it. Callers hold mu.
func (s *Server) nodeLocked(id string) *nodeState {
	n := s.nodes[id]
	if n == nil {
		n = &nodeState{id: id, acked: map[string]string{}, subscribed: map[string]bool{}}
		s.nodes[id] = n
	}
	return n
}

// pushAll rebuilds every node's snapshot from the current mesh.
func (s *Server) pushAll() {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	s.pushes++
	since := s.meshAt
	s.meshAt = time.Time{}
	var gen int64
	if s.mesh != nil {
		gen = s.mesh.Generation
		s.pushedGeneration = gen
	}
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		if err := s.pushNodeLocked(id); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	s.lastErr = errors.Join(errs...)
	s.appliedGeneration = gen
	s.mu.Unlock()
	s.metrics.observeConvergence(since)
}

// AppliedGeneration is the mesh generation whose snapshots have been set for every
// known node: once a proxy ACKs its version, it serves at least this generation.
func (s *Server) AppliedGeneration() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appliedGeneration
}

// pushNode builds and sets one node's snapshot now.
func (s *Server) pushNode(id string) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return s.pushNodeLocked(id)
}

// pushNodeLocked translates for one node; callers hold pushMu. On error the previous
// snapshot stays in place.
func (s *Server) pushNodeLocked(id string) error {
	s.mu.Lock()
	n := s.nodes[id]
	if n == nil || n.pinned {
		s.mu.Unlock()
		return nil
	}
	mesh, proxy, listeners := s.mesh, n.proxy, n.listeners
	if proxy != nil {
		proxy = s.withObservedLocked(proxy)
	}
	s.mu.Unlock()
	if mesh == nil {
		mesh = &model.Mesh{}
	}
	var res *translate.Resources
	var err error
	if proxy == nil {
		res, err = s.indexFor(mesh).ForClient(listeners)
	} else {
		res, err = s.indexFor(mesh).ForProxy(proxy)
	}
	if err != nil {
		return s.recordError(id, fmt.Errorf("node %s: %w", id, err))
	}
	return s.setResources(id, fmt.Sprint(mesh.Generation), res)
}

// setResources sets a snapshot unless the content is what the node already has. Each
// type's version is "<prefix>-<hash of that type's content>", and a type whose content
// did not change keeps its version (and is not resent); the node's Version is
// "<prefix>-<hash of all>". Nodes with the same content of a type share one set.
// Callers hold pushMu.
func (s *Server) setResources(id, prefix string, res *translate.Resources) error {
	built, err := s.buildWire(res)
	if err != nil {
		return s.recordError(id, fmt.Errorf("node %s: %w", id, err))
	}
	s.mu.Lock()
	n := s.nodeLocked(id)
	unchanged := n.version != "" && n.hash == built.hash
	if unchanged {
		n.err = nil
	}
	prev := n.snap
	s.mu.Unlock()
	if unchanged {
		return nil
	}
	version := prefix + "-" + built.hash[:12]
	snap := make(wireSnapshot, len(built.entries))
	versions := make(map[string]string, len(built.entries))
	for t, entries := range built.entries {
		hash := built.hashes[t]
		ts := prev[t]
		if ts == nil || ts.hash != hash {
			if ts, err = s.typeSet(t, prefix+"-"+hash[:12], hash, entries); err != nil {
				return s.recordError(id, fmt.Errorf("node %s version %s: %w", id, version, err))
			}
		}
		snap[t] = ts
		versions[shortType(t)] = ts.version
	}
	if err := s.consistent(snap); err != nil {
		return s.recordError(id, fmt.Errorf("node %s version %s: %w", id, version, err))
	}
	// Record the versions first: set may answer, and the ACK come back, at once.
	s.mu.Lock()
	n.version, n.hash, n.versions, n.snap, n.err = version, built.hash, versions, snap, nil
	s.mu.Unlock()
	s.cache.set(id, snap)
	s.log.Debug("snapshot set", "node", id, "version", version)
	return nil
}

func (s *Server) recordError(id string, err error) error {
	s.log.Error("xds snapshot not updated", "node", id, "err", err)
	s.metrics.internalErrs.Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[id]; n != nil {
		n.err = err
	}
	s.lastErr = err
	return err
}

// shortType names a type URL as people do (LDS, RDS, CDS, EDS, SDS).
func shortType(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "LDS"
	case resource.RouteType:
		return "RDS"
	case resource.ClusterType:
		return "CDS"
	case resource.EndpointType:
		return "EDS"
	case resource.SecretType:
		return "SDS"
	}
	return typeURL
}
