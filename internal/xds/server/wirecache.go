package server

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// wireCache is the control plane's xDS cache: go-control-plane's server asks it for
// watches, as it would its SnapshotCache, but every resource is already marshalled.
//
// Why not SnapshotCache: it wraps each resource of each node's snapshot in a fresh
// holder and marshals it per response, so a cluster shared by 1,000 proxies was
// marshalled 1,000 times per push (75–80% of the control plane's CPU at scale). Here a
// resource is marshalled once per mesh generation (pushCache) and the same bytes are
// referenced by every node snapshot and response that holds it.
//
// Each type has its own version, the node version at which its content last changed:
// a push that changes only endpoints answers only the EDS watches (state of the world
// allows it: a type is resent only when its set changed).
//
// Answering follows SnapshotCache with ads=true: a watch is answered when its request's
// version differs from the type's version, or when it subscribes to names present but
// never returned; a request naming resources is held until it names every resource of
// that type in the snapshot (so a proxy never drops what it still needs).
type wireCache struct {
	log *slog.Logger

	mu     sync.Mutex
	nodes  map[string]*cacheNode
	nextID int64
}

var _ cachev3.Cache = (*wireCache)(nil)

// wireResource is one resource as sent: marshalled once, shared and never modified.
type wireResource struct {
	name string
	any  *anypb.Any
	// version is a hash of the bytes: delta xDS's per-resource version.
	version string
}

// typeSnapshot is a set of resources of one type at one version, shared by every node
// whose set has that content (pushCache.typeSet); immutable.
type typeSnapshot struct {
	version   string
	hash      string
	resources []*wireResource // in translator order, names unique
	anys      []*anypb.Any    // the resources' bytes: the body of every response
	byName    map[string]*wireResource
	refs      []string // EDS or RDS names the resources reference (clusters, listeners)
}

// wireSnapshot is one node's config, by type URL; immutable once set.
type wireSnapshot map[string]*typeSnapshot

type cacheNode struct {
	snap    wireSnapshot
	watches map[int64]*sotwWatch
	deltas  map[int64]*deltaWatch
}

type sotwWatch struct {
	req *discovery.DiscoveryRequest
	sub cachev3.Subscription
	ch  chan cachev3.Response
}

type deltaWatch struct {
	req *discovery.DeltaDiscoveryRequest
	sub cachev3.Subscription
	ch  chan cachev3.DeltaResponse
}

func newWireCache(log *slog.Logger) *wireCache {
	return &wireCache{log: log, nodes: map[string]*cacheNode{}}
}

// responseOrder is the order ADS answers a push in: clusters (and their endpoints)
// before the listeners and routes that use them, as Envoy's xDS protocol advises.
var responseOrder = map[string]int{
	resource.ClusterType: 0, resource.EndpointType: 1, resource.ListenerType: 2,
	resource.RouteType: 3, resource.SecretType: 4,
}

func typeRank(t string) int {
	if r, ok := responseOrder[t]; ok {
		return r
	}
	return len(responseOrder)
}

// nodeLocked returns the node's entry, creating it. Callers hold mu.
func (c *wireCache) nodeLocked(id string) *cacheNode {
	n := c.nodes[id]
	if n == nil {
		n = &cacheNode{watches: map[int64]*sotwWatch{}, deltas: map[int64]*deltaWatch{}}
		c.nodes[id] = n
	}
	return n
}

// set replaces a node's snapshot and answers its open watches that it changes.
func (c *wireCache) set(id string, snap wireSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(id)
	n.snap = snap
	ids := make([]int64, 0, len(n.watches))
	for wid := range n.watches {
		ids = append(ids, wid)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := n.watches[ids[i]].req.GetTypeUrl(), n.watches[ids[j]].req.GetTypeUrl()
		if typeRank(a) != typeRank(b) {
			return typeRank(a) < typeRank(b)
		}
		return ids[i] < ids[j]
	})
	for _, wid := range ids {
		w := n.watches[wid]
		resp := snap.sotwResponse(w.req, w.sub)
		if resp == nil {
			continue
		}
		if c.trySend(w.ch, resp, id, w.req.GetTypeUrl()) {
			delete(n.watches, wid)
		}
	}
	dids := make([]int64, 0, len(n.deltas))
	for wid := range n.deltas {
		dids = append(dids, wid)
	}
	sort.Slice(dids, func(i, j int) bool {
		a, b := n.deltas[dids[i]].req.GetTypeUrl(), n.deltas[dids[j]].req.GetTypeUrl()
		if typeRank(a) != typeRank(b) {
			return typeRank(a) < typeRank(b)
		}
		return dids[i] < dids[j]
	})
	for _, wid := range dids {
		w := n.deltas[wid]
		resp := snap.deltaResponse(w.req, w.sub, false)
		if resp == nil {
			continue
		}
		select {
		case w.ch <- resp:
			delete(n.deltas, wid)
		default:
			c.log.Warn("xds delta response channel full; answer left for the next push", "node", id)
		}
	}
}

// trySend hands a response to a stream without blocking. go-control-plane's stream
// keeps one watch per type and room for one response per type, so the channel is never
// full; if it were, the watch stays open for the next push rather than blocking the
// cache for every node.
func (c *wireCache) trySend(ch chan cachev3.Response, resp cachev3.Response, node, typeURL string) bool {
	select {
	case ch <- resp:
		return true
	default:
		c.log.Warn("xds response channel full; answer left for the next push", "node", node, "type", shortType(typeURL))
		return false
	}
}

// CreateWatch answers at once when it can, else keeps the watch until a snapshot
// changes the type.
func (c *wireCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	id := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(id)
	if resp := n.snap.sotwResponse(req, sub); resp != nil && c.trySend(ch, resp, id, req.GetTypeUrl()) {
		return func() {}, nil
	}
	c.nextID++
	wid := c.nextID
	n.watches[wid] = &sotwWatch{req: req, sub: sub, ch: ch}
	return func() {
		c.mu.Lock()
		delete(n.watches, wid)
		c.mu.Unlock()
	}, nil
}

// CreateDeltaWatch serves incremental xDS from the same snapshots: a resource is sent
// when its content hash differs from what the client has.
func (c *wireCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	id := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(id)
	if n.snap != nil {
		if resp := n.snap.deltaResponse(req, sub, true); resp != nil {
			select {
			case ch <- resp:
				return func() {}, nil
			default:
			}
		}
	}
	c.nextID++
	wid := c.nextID
	n.deltas[wid] = &deltaWatch{req: req, sub: sub, ch: ch}
	return func() {
		c.mu.Lock()
		delete(n.deltas, wid)
		c.mu.Unlock()
	}, nil
}

// Fetch answers REST (polling) requests from the node's snapshot.
func (c *wireCache) Fetch(_ context.Context, req *cachev3.Request) (cachev3.Response, error) {
	c.mu.Lock()
	n := c.nodes[req.GetNode().GetId()]
	var snap wireSnapshot
	if n != nil {
		snap = n.snap
	}
	c.mu.Unlock()
	ts := snap[req.GetTypeUrl()]
	if ts == nil {
		return nil, errors.New("xds fetch: no snapshot for this node and type")
	}
	if req.GetVersionInfo() == ts.version {
		return nil, &types.SkipFetchError{}
	}
	return ts.response(req, namesOf(req.GetResourceNames())), nil
}

func namesOf(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}

// sotwResponse is the answer to a state-of-the-world watch, or nil to keep waiting.
func (snap wireSnapshot) sotwResponse(req *discovery.DiscoveryRequest, sub cachev3.Subscription) cachev3.Response {
	if snap == nil {
		return nil
	}
	ts := snap[req.GetTypeUrl()]
	if ts == nil {
		return nil
	}
	if req.GetVersionInfo() == ts.version && !ts.hasUnsent(sub) {
		return nil
	}
	if !sub.IsWildcard() {
		if want := namesOf(req.GetResourceNames()); len(want) > 0 {
			for _, r := range ts.resources {
				if !want[r.name] {
					return nil // ADS: wait until the request names everything it needs
				}
			}
		}
	}
	// A response always holds the whole set (the request names all of it).
	return &cachev3.PassthroughResponse{
		Request:           req,
		DiscoveryResponse: &discovery.DiscoveryResponse{VersionInfo: ts.version, TypeUrl: req.GetTypeUrl(), Resources: ts.anys},
		ReturnedResources: ts.returnedMarker(),
	}
}

// returnedMarker is what a state-of-the-world response tells the stream it returned:
// go-control-plane keeps this map in the stream's subscription and hands it back with
// the next request. Every response carries the whole set, so one entry is enough to
// say "this stream was answered at this version" (SnapshotCache keeps every name, per
// stream: with 10,000 services and 1,000 proxies, millions of entries). The entry's
// key is a name the client subscribes to, because the subscription drops the names
// the client no longer asks for; if it drops this one, the set is sent again, once.
// go-control-plane edits the map: a fresh one per response.
func (ts *typeSnapshot) returnedMarker() map[string]string {
	if len(ts.resources) == 0 {
		return map[string]string{}
	}
	return map[string]string{ts.resources[0].name: ts.version}
}

// hasUnsent: the stream has not been sent this set, and wants some of it. A request
// with the set's version on a stream that was answered (see returnedMarker) has
// everything: responses hold the whole set, and a by-name request is answered only
// once it names all of it.
func (ts *typeSnapshot) hasUnsent(sub cachev3.Subscription) bool {
	if len(sub.ReturnedResources()) > 0 {
		return false
	}
	if sub.IsWildcard() {
		return len(ts.resources) > 0
	}
	for name := range sub.SubscribedResources() {
		if ts.byName[name] != nil {
			return true
		}
	}
	return false
}

// response builds a response of the resources the request names (all when none), for
// REST fetches.
func (ts *typeSnapshot) response(req *discovery.DiscoveryRequest, want map[string]bool) *cachev3.PassthroughResponse {
	anys := make([]*anypb.Any, 0, len(ts.resources))
	returned := make(map[string]string, len(ts.resources))
	for _, r := range ts.resources {
		if want != nil && !want[r.name] {
			continue
		}
		anys = append(anys, r.any)
		returned[r.name] = ts.version
	}
	return &cachev3.PassthroughResponse{
		Request:           req,
		DiscoveryResponse: &discovery.DiscoveryResponse{VersionInfo: ts.version, TypeUrl: req.GetTypeUrl(), Resources: anys},
		ReturnedResources: returned,
	}
}

// deltaResponse lists the subscribed resources whose hash differs from what the client
// has, and those it has that are gone; nil when there is nothing to say (except for the
// first answer to a wildcard subscription, which is always sent).
func (snap wireSnapshot) deltaResponse(req *discovery.DeltaDiscoveryRequest, sub cachev3.Subscription, first bool) cachev3.DeltaResponse {
	ts := snap[req.GetTypeUrl()]
	if ts == nil {
		ts = &typeSnapshot{}
	}
	known := sub.ReturnedResources()
	subscribed := sub.SubscribedResources()
	next := make(map[string]string, len(known)+len(ts.resources))
	for k, v := range known {
		next[k] = v
	}
	out := &discovery.DeltaDiscoveryResponse{TypeUrl: req.GetTypeUrl(), SystemVersionInfo: ts.version}
	for _, r := range ts.resources {
		if _, ok := subscribed[r.name]; !ok && !sub.IsWildcard() {
			continue
		}
		if known[r.name] == r.version {
			continue
		}
		out.Resources = append(out.Resources, &discovery.Resource{Name: r.name, Version: r.version, Resource: r.any})
		next[r.name] = r.version
	}
	for name := range known {
		_, isSubscribed := subscribed[name]
		if ts.byName[name] == nil && (sub.IsWildcard() || isSubscribed) {
			out.RemovedResources = append(out.RemovedResources, name)
			delete(next, name)
		}
	}
	sort.Strings(out.RemovedResources)
	if len(out.Resources) == 0 && len(out.RemovedResources) == 0 && !(first && sub.IsWildcard() && req.GetResponseNonce() == "") {
		return nil
	}
	return &cachev3.DeltaPassthroughResponse{DeltaRequest: req, NextVersionMap: next, DeltaDiscoveryResponse: out}
}

// forget drops a node the server no longer serves (a closed stream's alias).
func (c *wireCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, id)
}
