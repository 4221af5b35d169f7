package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/translate"
)

// pushCache holds what one mesh generation's push shares between nodes: the
// translation index (outbound clusters, load assignments, virtual hosts and route
// tables are built once and shared by every node's resources), each resource
// marshalled once, and each distinct set of resources of one type once, so nodes with
// the same clusters (say) share one typeSnapshot and its prebuilt response body. It is
// owned by the push path: callers hold pushMu.
type pushCache struct {
	mesh  *model.Mesh
	index *translate.Index
	wire  map[types.Resource]*wireEntry
	// sets: type URL, version and content hash → the shared set of that content.
	sets map[string]*typeSnapshot
	// checked: memoised consistency of (clusters, endpoints) and (listeners, routes).
	checked map[[2]*typeSnapshot]error
}

// wireEntry is a marshalled resource, the hash of its bytes and, for clusters and
// listeners, the EDS or RDS names it references.
type wireEntry struct {
	res  *wireResource
	sum  [sha256.Size]byte
	refs []string
}

// indexFor returns the translation index of mesh, building it when the mesh changed.
// Callers hold pushMu.
func (s *Server) indexFor(mesh *model.Mesh) *translate.Index {
	if s.push.mesh != mesh || s.push.index == nil {
		s.push = pushCache{mesh: mesh, index: translate.NewIndex(mesh)}
	}
	return s.push.index
}

// wireOf marshals a resource, memoised by pointer for the current mesh (shared
// resources are immutable). Callers hold pushMu.
func (s *Server) wireOf(typeURL string, r types.Resource) (*wireEntry, error) {
	if s.push.wire == nil {
		s.push.wire = map[types.Resource]*wireEntry{}
	}
	if e, ok := s.push.wire[r]; ok {
		return e, nil
	}
	// Deterministic, so equal content gives equal bytes and hash across generations.
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", shortType(typeURL), cachev3.GetResourceName(r), err)
	}
	sum := sha256.Sum256(b)
	e := &wireEntry{
		res: &wireResource{name: cachev3.GetResourceName(r), any: &anypb.Any{TypeUrl: typeURL, Value: b}, version: hex.EncodeToString(sum[:8])},
		sum: sum,
	}
	switch v := r.(type) {
	case *cluster.Cluster:
		if v.GetType() == cluster.Cluster_EDS {
			name := v.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = v.GetName()
			}
			e.refs = []string{name}
		}
	case *listener.Listener:
		e.refs = routeRefs(v)
	}
	s.push.wire[r] = e
	return e, nil
}

// routeRefs lists the RDS route names a listener's HTTP connection managers use, as
// go-control-plane's Snapshot.Consistent reads them.
func routeRefs(l *listener.Listener) []string {
	var out []string
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			m := resource.GetHTTPConnectionManager(f)
			if m == nil {
				continue
			}
			if n := m.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
			for _, sc := range m.GetScopedRoutes().GetScopedRouteConfigurationsList().GetScopedRouteConfigurations() {
				out = append(out, sc.GetRouteConfigurationName())
			}
		}
	}
	return out
}

// wireTypes is the order of types in a node's content hash.
var wireTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType, resource.SecretType}

// builtNode is a node's config: per type, its content hash and marshalled entries.
type builtNode struct {
	entries map[string][]*wireEntry // type URL → in translator order
	hashes  map[string]string       // type URL → content hash
	hash    string                  // of the whole node config
}

// buildWire marshals (or reuses) the node's resources and hashes their content per
// type. Callers hold pushMu.
func (s *Server) buildWire(res *translate.Resources) (*builtNode, error) {
	byType := res.ByType()
	out := &builtNode{entries: map[string][]*wireEntry{}, hashes: map[string]string{}}
	all := sha256.New()
	for _, t := range wireTypes {
		list := byType[t]
		entries := make([]*wireEntry, 0, len(list))
		h := sha256.New()
		for _, r := range list {
			e, err := s.wireOf(t, r)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
			h.Write(e.sum[:])
		}
		sum := hex.EncodeToString(h.Sum(nil))
		out.entries[t], out.hashes[t] = entries, sum
		all.Write([]byte(sum))
		all.Write([]byte{'|'})
	}
	out.hash = hex.EncodeToString(all.Sum(nil))
	return out, nil
}

// typeSet returns the shared typeSnapshot of this content and version, building it
// once per push. Callers hold pushMu.
func (s *Server) typeSet(typeURL, version, hash string, entries []*wireEntry) (*typeSnapshot, error) {
	key := typeURL + "|" + version + "|" + hash
	if ts, ok := s.push.sets[key]; ok {
		return ts, nil
	}
	ts := &typeSnapshot{
		version:   version,
		hash:      hash,
		resources: make([]*wireResource, 0, len(entries)),
		anys:      make([]*anypb.Any, 0, len(entries)),
		byName:    make(map[string]*wireResource, len(entries)),
	}
	for _, e := range entries {
		if _, dup := ts.byName[e.res.name]; dup {
			return nil, fmt.Errorf("%w: duplicate %s %q", ErrInconsistentSnapshot, shortType(typeURL), e.res.name)
		}
		ts.byName[e.res.name] = e.res
		ts.resources = append(ts.resources, e.res)
		ts.anys = append(ts.anys, e.res.any)
		ts.refs = append(ts.refs, e.refs...)
	}
	if s.push.sets == nil {
		s.push.sets = map[string]*typeSnapshot{}
	}
	s.push.sets[key] = ts
	return ts, nil
}

// consistent is Snapshot.Consistent on a node's snapshot: the EDS names its clusters
// reference are exactly its load assignments, the RDS names its listeners reference
// exactly its routes, except that a snapshot without listeners (a generic client) may
// hold routes: such clients request them by name. Memoised per pair of shared sets.
// Callers hold pushMu.
func (s *Server) consistent(snap wireSnapshot) error {
	check := func(from, to string) error {
		a, b := snap[from], snap[to]
		if a == nil || b == nil {
			return nil
		}
		if to == resource.RouteType && len(a.resources) == 0 && len(b.resources) > 0 {
			return nil
		}
		key := [2]*typeSnapshot{a, b}
		if err, ok := s.push.checked[key]; ok {
			return err
		}
		err := sameNames(to, a.refs, b)
		if s.push.checked == nil {
			s.push.checked = map[[2]*typeSnapshot]error{}
		}
		s.push.checked[key] = err
		return err
	}
	if err := check(resource.ClusterType, resource.EndpointType); err != nil {
		return err
	}
	return check(resource.ListenerType, resource.RouteType)
}

func sameNames(typeURL string, refs []string, have *typeSnapshot) error {
	set := make(map[string]bool, len(refs))
	for _, r := range refs {
		set[r] = true
	}
	if len(set) != len(have.resources) {
		return fmt.Errorf("%w: mismatched %q reference and resource lengths: %d referenced, %d present",
			ErrInconsistentSnapshot, typeURL, len(set), len(have.resources))
	}
	for _, r := range have.resources {
		if !set[r.name] {
			return fmt.Errorf("%w: inconsistent %q reference: %q not listed", ErrInconsistentSnapshot, typeURL, r.name)
		}
	}
	return nil
}
