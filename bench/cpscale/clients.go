package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"skein.dev/skein/internal/proxy"
	"skein.dev/skein/internal/xds/scopeapi"
)

// The client role: Clients lightweight ADS clients in this one process, each a real
// gRPC stream to the control plane on loopback (25 streams share one connection),
// subscribing as the skein proxy does (CDS and LDS wildcard, then EDS and RDS by name)
// and ACKing every response. They keep no config, only what they need to ACK. When
// every client has ACKed all four types, the newest at a new generation, one JSON line
// is printed.

// syncEvent: a client ACKed every type at generation gen.
type syncEvent struct {
	client int
	gen    int64
	at     time.Time
	bytes  int64 // response bytes received since the previous sync
}

// genSummary is printed once per generation, when every client has synced to it.
type genSummary struct {
	Gen         int64 `json:"gen"`
	FirstNano   int64 `json:"first"`
	LastNano    int64 `json:"last"`
	BytesTotal  int64 `json:"bytesTotal"`
	ClientCount int   `json:"clients"`
}

func runClients(addr string, sc scenario) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan syncEvent, sc.Clients)
	errs := make(chan error, sc.Clients)
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for j := 0; j < sc.Clients; j++ {
		if j%25 == 0 {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
			if err != nil {
				return err
			}
			conns = append(conns, conn)
		}
		node, err := proxy.NodeProto(sc.proxy(j))
		if err != nil {
			return err
		}
		conn := conns[len(conns)-1]
		c := &adsClient{id: j, node: node, events: events, ver: map[string]string{}, nonce: map[string]string{}}
		if sc.Scope == "inferred" {
			for _, d := range sc.deps(j) {
				c.observe = append(c.observe, sc.host(d))
			}
		}
		go func() {
			if err := c.run(ctx, conn); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("client %d: %w", c.id, err)
			}
		}()
	}
	type agg struct {
		first, last time.Time
		bytes       int64
		n           int
	}
	gens := map[int64]*agg{}
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case err := <-errs:
			return err
		case ev := <-events:
			a := gens[ev.gen]
			if a == nil {
				a = &agg{first: ev.at}
				gens[ev.gen] = a
			}
			a.n++
			a.bytes += ev.bytes
			if ev.at.Before(a.first) {
				a.first = ev.at
			}
			if ev.at.After(a.last) {
				a.last = ev.at
			}
			if a.n == sc.Clients {
				if err := enc.Encode(genSummary{Gen: ev.gen, FirstNano: a.first.UnixNano(), LastNano: a.last.UnixNano(), BytesTotal: a.bytes, ClientCount: a.n}); err != nil {
					return err
				}
			}
		}
	}
}

type adsClient struct {
	id     int
	node   *corev3.Node
	events chan<- syncEvent
	ver    map[string]string // type URL -> last version ACKed
	nonce  map[string]string
	eds    []string
	rds    []string
	bytes  int64
	synced int64
	// observe: the hosts to report once the stream is open (inferred scope); then
	// fresh records the types received since the report.
	observe  []string
	observed bool
	fresh    map[string]bool
}

func (c *adsClient) run(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	send := func(typeURL string, names []string) error {
		req := &discovery.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: c.ver[typeURL], ResponseNonce: c.nonce[typeURL], ResourceNames: names}
		if c.ver[typeURL] == "" && c.nonce[typeURL] == "" {
			req.Node = c.nodeProto()
		}
		return stream.Send(req)
	}
	if err := send(rsrc.ClusterType, nil); err != nil {
		return err
	}
	if err := send(rsrc.ListenerType, nil); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		c.bytes += int64(proto.Size(resp))
		t := resp.GetTypeUrl()
		c.ver[t], c.nonce[t] = resp.GetVersionInfo(), resp.GetNonce()
		if c.observed {
			c.fresh[t] = true
		}
		switch t {
		case rsrc.ClusterType:
			if err := send(t, nil); err != nil {
				return err
			}
			if names := edsNames(resp); !slices.Equal(names, c.eds) {
				c.eds = names
				if err := send(rsrc.EndpointType, names); err != nil {
					return err
				}
			}
		case rsrc.ListenerType:
			if err := send(t, nil); err != nil {
				return err
			}
			names, err := rdsNames(resp)
			if err != nil {
				return err
			}
			if !slices.Equal(names, c.rds) {
				c.rds = names
				if err := send(rsrc.RouteType, names); err != nil {
					return err
				}
			}
		case rsrc.EndpointType:
			if err := send(t, c.eds); err != nil {
				return err
			}
		case rsrc.RouteType:
			if err := send(t, c.rds); err != nil {
				return err
			}
		}
		if len(c.observe) > 0 && !c.observed && t == rsrc.ClusterType {
			// The control plane rebuilds this proxy's config before answering.
			if _, _, err := scopeapi.Observe(ctx, conn, c.node.GetId(), c.observe); err != nil {
				return fmt.Errorf("scope report: %w", err)
			}
			c.observed, c.fresh = true, map[string]bool{}
		}
		if len(c.observe) > 0 && !(c.fresh[rsrc.ClusterType] && c.fresh[rsrc.EndpointType]) {
			continue // synced only once the reported dependencies arrived
		}
		if gen, ok := c.syncedGen(); ok && gen > c.synced {
			c.synced = gen
			c.events <- syncEvent{client: c.id, gen: gen, at: time.Now(), bytes: c.bytes}
			c.bytes = 0
		}
	}
}

func (c *adsClient) nodeProto() *corev3.Node { return c.node }

// syncedGen: every type ACKed, the newest at generation gen (versions are
// "<gen>-<hash>"; the server resends only the types a generation changed, so the
// others keep an older generation). The server process checks, from its own ACK
// tracking, that every type of every client is in sync.
func (c *adsClient) syncedGen() (int64, bool) {
	var gen int64 = -1
	for _, t := range []string{rsrc.ClusterType, rsrc.EndpointType, rsrc.ListenerType, rsrc.RouteType} {
		v := c.ver[t]
		g, _, ok := strings.Cut(v, "-")
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return 0, false
		}
		gen = max(gen, n)
	}
	return gen, true
}

// edsNames reads the names of EDS clusters straight from the wire (Cluster.name is
// field 1, Cluster.type field 2 with EDS = 3), without decoding whole clusters.
func edsNames(resp *discovery.DiscoveryResponse) []string {
	var out []string
	for _, a := range resp.GetResources() {
		b := a.GetValue()
		var name string
		var eds bool
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				break
			}
			b = b[n:]
			switch {
			case num == 1 && typ == protowire.BytesType:
				v, m := protowire.ConsumeBytes(b)
				name, n = string(v), m
			case num == 2 && typ == protowire.VarintType:
				v, m := protowire.ConsumeVarint(b)
				eds, n = v == uint64(cluster.Cluster_EDS), m
			default:
				n = protowire.ConsumeFieldValue(num, typ, b)
			}
			if n < 0 {
				break
			}
			b = b[n:]
		}
		if eds {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// rdsNames decodes the (few) listeners to find their RDS route names.
func rdsNames(resp *discovery.DiscoveryResponse) ([]string, error) {
	var out []string
	for _, a := range resp.GetResources() {
		var l listener.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			return nil, err
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var m hcm.HttpConnectionManager
				if f.GetTypedConfig().MessageIs(&m) {
					if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
						return nil, err
					}
					if n := m.GetRds().GetRouteConfigName(); n != "" {
						out = append(out, n)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
