// Package xdsclient is the proxy's ADS client. One goroutine owns the stream and all
// subscription state: it subscribes CDS (wildcard), then EDS by the names of EDS
// clusters, LDS (wildcard), then RDS by the names HTTP listeners reference; it ACKs or
// NACKs every response as docs/XDS.md says, and hands each complete, validated set of
// resources to OnUpdate. It reconnects with backoff and keeps the accepted state.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"skein.dev/skein/internal/proxy/resource"
)

// maxXDSMessage bounds one xDS response the proxy accepts.
const maxXDSMessage = 128 << 20

// Update is one complete and consistent set of accepted resources: every EDS cluster has
// its endpoints and every RDS name referenced by a listener has its route configuration.
// The maps are never mutated after they are handed out.
type Update struct {
	Listeners map[string]*resource.Listener
	Routes    map[string]*resource.RouteConfig
	Clusters  map[string]*resource.Cluster
	Endpoints map[string]*resource.Endpoints
	// Secrets are the SDS secrets the clusters and listeners reference, except the
	// ones the proxy provides itself (Options.LocalSecrets).
	Secrets map[string]*resource.Secret
}

// Options configure a Client.
type Options struct {
	// Address is host:port of the ADS server (plaintext gRPC).
	Address string
	Node    *corev3.Node
	Logger  *slog.Logger
	// OnUpdate receives every new complete set, from the client's goroutine.
	OnUpdate func(Update)
	// OnResponse, optional, is told whether each response was accepted (ACK) or not.
	OnResponse func(typeURL string, accepted bool)
	// MinBackoff and MaxBackoff bound reconnect delays; defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// NACKRetryDelay is the first delay before NACKing the same rejected version again;
	// it doubles up to 30s. Default 1s.
	NACKRetryDelay time.Duration
	// LocalSecrets are SDS secret names the proxy provides itself ("default", its
	// workload certificate): they are never requested from the server.
	LocalSecrets []string
	// Decoder, optional, replaces the default resource decoder.
	Decoder *resource.Decoder
}

// Client is an ADS client. Create it with New and start it with Run.
type Client struct {
	opts    Options
	decoder *resource.Decoder
	status  atomic.Pointer[Status]

	// Owned by the Run goroutine.
	types       map[string]*typeState
	lastEmitted *Update
}

type typeState struct {
	subscribed bool
	wildcard   bool
	names      []string // sorted, when not wildcard
	received   bool
	version    string
	nonce      string
	resources  map[string]any
	protos     map[string]proto.Message
	lastNACK   string

	// Repeated-NACK damping.
	nackedVersion string
	nackDelay     time.Duration
	delayedNACK   error
	nackAt        time.Time
}

// New returns a client; it does nothing until Run.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.NACKRetryDelay <= 0 {
		opts.NACKRetryDelay = time.Second
	}
	c := &Client{opts: opts, decoder: opts.Decoder, types: map[string]*typeState{}}
	if c.decoder == nil {
		c.decoder = resource.NewDecoder()
	}
	for _, t := range c.typeOrder() {
		c.types[t] = &typeState{resources: map[string]any{}, protos: map[string]proto.Message{}}
	}
	c.types[resource.ClusterType].wildcard = true
	c.types[resource.ListenerType].wildcard = true
	c.publishStatus()
	return c
}

// Run connects and keeps the stream up until ctx is done. It returns nil on ctx done.
func (c *Client) Run(ctx context.Context) error {
	// gRPC's default 4 MB receive limit is too small for one type's response in a
	// large unscoped mesh (10,000 services: about 8 MB of config per proxy, see
	// docs/BENCHMARKS.md); Envoy accepts such responses too.
	conn, err := grpc.NewClient(c.opts.Address, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxXDSMessage)))
	if err != nil {
		return fmt.Errorf("xds client for %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	backoff := c.opts.MinBackoff
	for {
		received, err := c.runStream(ctx, ads)
		if ctx.Err() != nil {
			return nil
		}
		if received {
			backoff = c.opts.MinBackoff
		}
		c.opts.Logger.Warn("xds stream ended, reconnecting", "address", c.opts.Address, "error", err, "backoff", backoff)
		// Full jitter keeps many proxies from reconnecting in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

// runStream runs one ADS stream; it reports whether any response was received.
func (c *Client) runStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ads.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	// A new stream has no nonces; resubscribe everything with the last accepted versions.
	for _, t := range c.typeOrder() {
		st := c.types[t]
		st.nonce = ""
		if t == resource.ClusterType || st.subscribed {
			st.subscribed = true
			if err := c.send(stream, t, nil); err != nil {
				return false, err
			}
		}
	}
	// The reader goroutine only receives; this goroutine owns all state and all sends.
	responses := make(chan *discoveryv3.DiscoveryResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case responses <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	received := false
	for {
		var retry <-chan time.Time
		if next, ok := c.nextDelayedNACK(); ok {
			retry = time.After(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return received, ctx.Err()
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				err = errors.New("server closed the stream")
			}
			return received, err
		case resp := <-responses:
			received = true
			if err := c.handle(stream, resp); err != nil {
				return received, err
			}
		case <-retry:
			if err := c.sendDelayedNACKs(stream); err != nil {
				return received, err
			}
		}
	}
}

func (c *Client) typeOrder() []string {
	return []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}
}

type adsStream = grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]

func (c *Client) send(stream adsStream, typeURL string, nack error) error {
	st := c.types[typeURL]
	req := &discoveryv3.DiscoveryRequest{
		Node:          c.opts.Node,
		TypeUrl:       typeURL,
		VersionInfo:   st.version,
		ResponseNonce: st.nonce,
	}
	if !st.wildcard {
		req.ResourceNames = st.names
	}
	if nack != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
	}
	return stream.Send(req)
}

func (c *Client) handle(stream adsStream, resp *discoveryv3.DiscoveryResponse) error {
	st, ok := c.types[resp.GetTypeUrl()]
	if !ok {
		c.opts.Logger.Warn("xds response of unexpected type ignored", "type", resp.GetTypeUrl())
		return nil
	}
	st.nonce = resp.GetNonce()
	resources, protos, err := c.decodeAll(resp)
	if err != nil {
		repeat := st.nackedVersion == resp.GetVersionInfo() && st.lastNACK == err.Error()
		st.lastNACK, st.nackedVersion = err.Error(), resp.GetVersionInfo()
		c.report(resp.GetTypeUrl(), false)
		c.publishStatus()
		if repeat {
			// A state-of-the-world server answers a NACK (old version) by resending the
			// rejected version at once; delay repeated NACKs so the pair does not spin.
			st.nackDelay = min(max(2*st.nackDelay, c.opts.NACKRetryDelay), 30*time.Second)
			st.delayedNACK = err
			st.nackAt = time.Now().Add(st.nackDelay)
			c.opts.Logger.Debug("xds NACK repeated, delaying", "type", resp.GetTypeUrl(), "version", resp.GetVersionInfo(), "delay", st.nackDelay)
			return nil
		}
		st.nackDelay = 0
		c.opts.Logger.Warn("xds NACK", "type", resp.GetTypeUrl(), "version", resp.GetVersionInfo(), "error", err)
		return c.send(stream, resp.GetTypeUrl(), err)
	}
	st.nackedVersion, st.nackDelay, st.delayedNACK = "", 0, nil
	st.received = true
	st.version = resp.GetVersionInfo()
	st.resources, st.protos = resources, protos
	c.opts.Logger.Debug("xds ACK", "type", resp.GetTypeUrl(), "version", st.version, "resources", len(resources))
	c.report(resp.GetTypeUrl(), true)
	// Subscribe to what the new resources reference, apply, then ACK: a control plane
	// that sees the ACK (and anyone waiting on it) may rely on the config being in
	// force. While a referenced resource is still missing (e.g. LDS arrived, its RDS
	// not yet) nothing is applied, so nothing new is published either.
	if err := c.updateSubscriptions(stream, resp.GetTypeUrl()); err != nil {
		return err
	}
	emitted := c.maybeEmit()
	if err := c.send(stream, resp.GetTypeUrl(), nil); err != nil {
		return err
	}
	if emitted {
		c.publishStatus()
	}
	return nil
}

func (c *Client) report(typeURL string, accepted bool) {
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(typeURL, accepted)
	}
}

// decodeAll validates every resource of a response; one bad resource rejects them all,
// as state-of-the-world responses are applied whole.
func (c *Client) decodeAll(resp *discoveryv3.DiscoveryResponse) (map[string]any, map[string]proto.Message, error) {
	st := c.types[resp.GetTypeUrl()]
	resources := make(map[string]any, len(resp.GetResources()))
	protos := make(map[string]proto.Message, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		var (
			name string
			res  any
			pb   proto.Message
			err  error
		)
		switch resp.GetTypeUrl() {
		case resource.ListenerType:
			var d resource.Decoded[*resource.Listener]
			d, err = c.decoder.Listener(a)
			name, res, pb = d.Name, d.Resource, d.Proto
		case resource.RouteType:
			var d resource.Decoded[*resource.RouteConfig]
			d, err = c.decoder.RouteConfig(a)
			name, res, pb = d.Name, d.Resource, d.Proto
		case resource.ClusterType:
			var d resource.Decoded[*resource.Cluster]
			d, err = c.decoder.Cluster(a)
			name, res, pb = d.Name, d.Resource, d.Proto
		case resource.EndpointType:
			var d resource.Decoded[*resource.Endpoints]
			d, err = c.decoder.Endpoints(a)
			name, res, pb = d.Name, d.Resource, d.Proto
		case resource.SecretType:
			var d resource.Decoded[*resource.Secret]
			d, err = c.decoder.Secret(a)
			name, res, pb = d.Name, d.Resource, d.Proto
		}
		if err != nil {
			return nil, nil, err
		}
		if _, dup := resources[name]; dup {
			return nil, nil, fmt.Errorf("duplicate resource %q", name)
		}
		// The server may still answer for names we no longer want; keep only ours.
		if !st.wildcard && !slices.Contains(st.names, name) {
			continue
		}
		resources[name], protos[name] = res, pb
	}
	return resources, protos, nil
}

// updateSubscriptions follows references: CDS names EDS resources, LDS names RDS ones.
func (c *Client) updateSubscriptions(stream adsStream, typeURL string) error {
	switch typeURL {
	case resource.ClusterType:
		var names []string
		for name, r := range c.types[resource.ClusterType].resources {
			if r.(*resource.Cluster).Kind == resource.ClusterEDS {
				names = append(names, name)
			}
		}
		if err := c.resubscribe(stream, resource.EndpointType, names); err != nil {
			return err
		}
		if err := c.resubscribe(stream, resource.SecretType, c.secretNames()); err != nil {
			return err
		}
		if lds := c.types[resource.ListenerType]; !lds.subscribed {
			lds.subscribed = true
			return c.send(stream, resource.ListenerType, nil)
		}
	case resource.ListenerType:
		var names []string
		for _, r := range c.types[resource.ListenerType].resources {
			for _, n := range r.(*resource.Listener).RDSNames() {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
		if err := c.resubscribe(stream, resource.RouteType, names); err != nil {
			return err
		}
		return c.resubscribe(stream, resource.SecretType, c.secretNames())
	}
	return nil
}

// secretNames lists the SDS secrets accepted clusters and listeners reference, minus
// the local ones.
func (c *Client) secretNames() []string {
	var names []string
	add := func(list []string) {
		for _, n := range list {
			if !slices.Contains(names, n) && !slices.Contains(c.opts.LocalSecrets, n) {
				names = append(names, n)
			}
		}
	}
	for _, r := range c.types[resource.ClusterType].resources {
		add(r.(*resource.Cluster).SecretNames())
	}
	for _, r := range c.types[resource.ListenerType].resources {
		add(r.(*resource.Listener).SecretNames())
	}
	return names
}

func (c *Client) resubscribe(stream adsStream, typeURL string, names []string) error {
	sort.Strings(names)
	st := c.types[typeURL]
	if st.subscribed && slices.Equal(st.names, names) {
		return nil
	}
	st.names = names
	for name := range st.resources {
		if !slices.Contains(names, name) {
			delete(st.resources, name)
			delete(st.protos, name)
		}
	}
	if len(names) == 0 {
		// An empty list would be a wildcard subscription to the server; simply stop asking.
		st.subscribed = false
		return nil
	}
	st.subscribed = true
	return c.send(stream, typeURL, nil)
}

// maybeEmit hands a new Update to OnUpdate once every referenced resource is present.
// It reports whether the accepted state is complete (emitted now or before).
func (c *Client) maybeEmit() bool {
	cds, eds, lds, rds, sds := c.types[resource.ClusterType], c.types[resource.EndpointType], c.types[resource.ListenerType], c.types[resource.RouteType], c.types[resource.SecretType]
	if !cds.received {
		return false
	}
	for _, n := range eds.names {
		if _, ok := eds.resources[n]; !ok {
			return false
		}
	}
	if !lds.received {
		return true // nothing to apply before LDS; the CDS/EDS versions may be shown
	}
	for _, n := range rds.names {
		if _, ok := rds.resources[n]; !ok {
			return false
		}
	}
	for _, n := range sds.names {
		if _, ok := sds.resources[n]; !ok {
			return false
		}
	}
	u := Update{
		Listeners: copyAs[*resource.Listener](lds.resources),
		Routes:    copyAs[*resource.RouteConfig](rds.resources),
		Clusters:  copyAs[*resource.Cluster](cds.resources),
		Endpoints: copyAs[*resource.Endpoints](eds.resources),
		Secrets:   copyAs[*resource.Secret](sds.resources),
	}
	if c.lastEmitted != nil && sameUpdate(*c.lastEmitted, u) {
		return true
	}
	c.lastEmitted = &u
	if c.opts.OnUpdate != nil {
		c.opts.OnUpdate(u)
	}
	return true
}

func copyAs[T comparable](m map[string]any) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[k] = v.(T)
	}
	return out
}

// sameUpdate compares by pointer: decoded resources are new objects on every response.
func sameUpdate(a, b Update) bool {
	return mapsSame(a.Listeners, b.Listeners) && mapsSame(a.Routes, b.Routes) &&
		mapsSame(a.Clusters, b.Clusters) && mapsSame(a.Endpoints, b.Endpoints) && mapsSame(a.Secrets, b.Secrets)
}

func mapsSame[T comparable](a, b map[string]T) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (c *Client) nextDelayedNACK() (time.Time, bool) {
	var next time.Time
	found := false
	for _, st := range c.types {
		if st.delayedNACK != nil && (!found || st.nackAt.Before(next)) {
			next, found = st.nackAt, true
		}
	}
	return next, found
}

func (c *Client) sendDelayedNACKs(stream adsStream) error {
	now := time.Now()
	for _, t := range c.typeOrder() {
		st := c.types[t]
		if st.delayedNACK == nil || st.nackAt.After(now) {
			continue
		}
		err := st.delayedNACK
		st.delayedNACK = nil
		if sendErr := c.send(stream, t, err); sendErr != nil {
			return sendErr
		}
	}
	return nil
}
