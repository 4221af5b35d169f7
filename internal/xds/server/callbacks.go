package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"skein.dev/skein/internal/model"
)

// callbacks learns nodes and their ACK/NACK state from go-control-plane's stream
// events. go-control-plane calls them synchronously on each stream's goroutine.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node) { c.s.closeStream(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}

// OnStreamRequest learns the node (building its first snapshot before the watch is
// created, so it is answered at once) and records ACKs and NACKs.
func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	key := streamKey{id: id}
	// The watch go-control-plane creates after this callback reads req.Node.
	req.Node = c.s.streamNode(key, req.GetNode())
	if err := c.s.learnNode(key, req.GetNode()); err != nil {
		return err
	}
	if id := c.s.trackRequest(key, req); id != "" {
		// A generic client named new listeners: build them before its watch is made.
		_ = c.s.pushNode(id)
	}
	return nil
}

// OnStreamDeltaRequest learns the node; ACK tracking covers SotW streams only.
// go-control-plane calls it before it copies the stream's node into a request that
// has none (only the first must carry it).
func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	key := streamKey{delta: true, id: id}
	if req.GetNode() == nil && c.s.streamBound(key) {
		return nil
	}
	return c.s.learnNode(key, req.GetNode())
}

// streamBound: the stream's node is known.
func (s *Server) streamBound(key streamKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	return st != nil && st.nodeID != ""
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[streamKey{id: id}]; st != nil {
		st.sent[resp.GetTypeUrl()] = sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
	}
	s.metrics.pushes.WithLabelValues(strings.ToLower(shortType(resp.GetTypeUrl()))).Inc()
}

func (callbacks) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}

func (callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

func (callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

func (s *Server) openStream(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[key] = &streamState{sent: map[string]sentResponse{}}
}

// closeStream marks the node disconnected when its last stream ends; its status stays,
// except for a stream alias (streamNode), which goes with its stream.
func (s *Server) closeStream(key streamKey) {
	s.pushMu.Lock() // no push may recreate an alias being forgotten
	defer s.pushMu.Unlock()
	s.mu.Lock()
	st := s.streams[key]
	delete(s.streams, key)
	if st == nil || st.nodeID == "" {
		s.mu.Unlock()
		return
	}
	if st.alias != nil {
		delete(s.nodes, st.nodeID)
		s.mu.Unlock()
		s.cache.forget(st.nodeID)
		return
	}
	if n := s.nodes[st.nodeID]; n != nil && n.streams > 0 {
		n.streams--
	}
	s.mu.Unlock()
}

// streamNode is the node a stream is served as. grpc-go opens one ADS stream per
// xds:/// target (gRFC A71), all with the bootstrap's node id, and each stream names
// only its own target's listener; the cache answers a request only when it names
// every listener of its node's snapshot. So while a generic client's node id already
// has a live stream, a further stream is served as a node of its own,
// "<id>/stream-<n>", which ends with the stream. Proxies (SKEIN_PROXY) are unchanged.
func (s *Server) streamNode(key streamKey, node *core.Node) *core.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	switch {
	case st == nil || node.GetId() == "":
		return node
	case st.alias != nil:
		return st.alias
	case st.nodeID != "":
		return node // bound on its first request, under its own id
	case node.GetMetadata().GetFields()[ProxyMetadataKey].GetStringValue() != "":
		return node
	}
	if n := s.nodes[node.GetId()]; n == nil || n.streams == 0 || n.proxy != nil {
		return node
	}
	alias := proto.Clone(node).(*core.Node)
	alias.Id = fmt.Sprintf("%s/stream-%d", node.GetId(), key.id)
	st.alias = alias
	return alias
}

// learnNode binds a stream to its node and, for a node never seen or whose
// SKEIN_PROXY metadata changed, decodes the metadata and builds its snapshot now,
// without waiting for the debounce.
func (s *Server) learnNode(key streamKey, node *core.Node) error {
	if node.GetId() == "" {
		return status.Error(codes.InvalidArgument, "xds: node.id is required")
	}
	id := node.GetId()
	meta := node.GetMetadata().GetFields()[ProxyMetadataKey].GetStringValue()

	s.mu.Lock()
	n, known := s.nodes[id]
	if !known {
		n = s.nodeLocked(id)
	}
	if st := s.streams[key]; st != nil && st.nodeID == "" {
		st.nodeID = id
		n.streams++
		if n.streams == 1 {
			n.connectedAt = s.now()
		}
	}
	changed := !known || meta != n.metadata
	if changed {
		proxy, err := decodeProxy(meta)
		if err != nil {
			n.err = err
			s.mu.Unlock()
			s.log.Warn("xds node rejected", "node", id, "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		n.proxy, n.metadata = proxy, meta
	}
	s.mu.Unlock()
	if changed {
		s.log.Info("xds node connected", "node", id, "generic", meta == "")
		// Errors are recorded in the node's status; the stream stays open and gets a
		// snapshot once one can be built.
		_ = s.pushNode(id)
	}
	return nil
}

// decodeProxy reads SKEIN_PROXY; empty means a generic client (nil proxy).
func decodeProxy(meta string) (*model.Proxy, error) {
	if meta == "" {
		return nil, nil
	}
	var p model.Proxy
	if err := json.Unmarshal([]byte(meta), &p); err != nil {
		return nil, fmt.Errorf("xds: node metadata %s: %w", ProxyMetadataKey, err)
	}
	return &p, nil
}

// trackRequest records an ACK (response_nonce of the last response, no error_detail)
// or a NACK (error_detail set) for the request's type. It returns the node's id when a
// generic client changed the listener names it asks for (its snapshot must follow).
func (s *Server) trackRequest(key streamKey, req *discovery.DiscoveryRequest) (repush string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return ""
	}
	n := s.nodes[st.nodeID]
	if n == nil {
		return ""
	}
	typ := shortType(req.GetTypeUrl())
	n.subscribed[typ] = true
	if n.proxy == nil && req.GetTypeUrl() == resource.ListenerType {
		names := slices.Sorted(slices.Values(req.GetResourceNames()))
		names = slices.Compact(names)
		if !slices.Equal(names, n.listeners) {
			n.listeners = names
			repush = n.id
		}
	}
	sent, ok := st.sent[req.GetTypeUrl()]
	if req.GetResponseNonce() == "" || !ok || sent.nonce != req.GetResponseNonce() {
		return repush // first request of this type, or a stale nonce go-control-plane ignores too
	}
	if detail := req.GetErrorDetail(); detail != nil {
		n.nack = &NACK{TypeURL: req.GetTypeUrl(), Version: sent.version, Message: detail.GetMessage(), At: s.now()}
		s.metrics.rejects.WithLabelValues(strings.ToLower(typ)).Inc()
		s.log.Warn("xds NACK", "node", n.id, "type", typ, "version", sent.version, "message", detail.GetMessage())
		// go-control-plane answers a NACK (which carries the previous good version) by
		// resending the rejected version at once, and a strict client NACKs it again in
		// a tight loop. Make the new watch wait for the next version instead.
		req.VersionInfo = sent.version
		return repush
	}
	n.acked[typ] = req.GetVersionInfo()
	if n.nack != nil && n.nack.TypeURL == req.GetTypeUrl() && req.GetVersionInfo() == n.versions[typ] {
		n.nack = nil
	}
	return repush
}
