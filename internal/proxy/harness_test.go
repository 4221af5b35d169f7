package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
)

const nodeID = "client-0.default"

// controlPlane is a real go-control-plane ADS server on 127.0.0.1:0.
type controlPlane struct {
	addr  string
	cache cachev3.SnapshotCache
	mu    sync.Mutex
	nacks []string
	ver   int
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controlPlane{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if req.GetErrorDetail() != nil {
				cp.mu.Lock()
				cp.nacks = append(cp.nacks, req.GetErrorDetail().GetMessage())
				cp.mu.Unlock()
			}
			return nil
		},
	}
	srv := serverv3.NewServer(ctx, cp.cache, cb)
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(func() { cancel(); gs.Stop() })
	return cp
}

func (cp *controlPlane) nackMessages() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.nacks...)
}

// set pushes a snapshot built from the given resources to the default node.
func (cp *controlPlane) set(t *testing.T, r snapshot) {
	t.Helper()
	cp.setFor(t, nodeID, r)
}

// setFor pushes a snapshot to one node.
func (cp *controlPlane) setFor(t *testing.T, node string, r snapshot) {
	t.Helper()
	cp.mu.Lock()
	cp.ver++
	v := strconv.Itoa(cp.ver)
	cp.mu.Unlock()
	snap, err := cachev3.NewSnapshot(v, map[rsrc.Type][]types.Resource{
		rsrc.ListenerType: r.listeners,
		rsrc.RouteType:    r.routes,
		rsrc.ClusterType:  r.clusters,
		rsrc.EndpointType: r.endpoints,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("inconsistent snapshot: %v", err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

type snapshot struct {
	listeners, routes, clusters, endpoints []types.Resource
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(hostport string) *corev3.Address {
	host, port, _ := net.SplitHostPort(hostport)
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
}

func httpListener(t testing.TB, name, addr, rdsName string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: rdsName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
	}
	return &listenerv3.Listener{
		Name: name, Address: sockAddr(addr), StatPrefix: name,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
		}}}},
	}
}

func tcpListener(t testing.TB, name, addr, cluster string) *listenerv3.Listener {
	tp := &tcpv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.Listener{
		Name: name, Address: sockAddr(addr),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tp)},
		}}}},
	}
}

func edsCluster(t testing.TB, name string, http2 bool, lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             lb,
	}
	if http2 {
		opts := &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, opts)}
	}
	return c
}

func endpoints(cluster string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	loc := &endpointv3.LocalityLbEndpoints{}
	for _, a := range addrs {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr(a)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
		})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla
}

func toCluster(name string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// freeAddr reserves a loopback port for a listener the proxy will bind.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// backend is an HTTP server that answers with its name and what it saw.
type backend struct {
	name string
	srv  *httptest.Server
}

type echoReply struct {
	Backend string      `json:"backend"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Proto   string      `json:"proto"`
	Header  http.Header `json:"header"`
}

func startBackend(t *testing.T, name string, h2c bool) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoReply{Backend: name, Host: r.Host, Path: r.URL.Path, Proto: r.Proto, Header: r.Header})
	}))
	if h2c {
		b.srv.Config.Protocols = new(http.Protocols)
		b.srv.Config.Protocols.SetHTTP1(true)
		b.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// runningProxy is skein's proxy started in-process by proxy.Run.
type runningProxy struct {
	admin string
	done  chan error
	node  string
}

func startProxy(t *testing.T, cp *controlPlane) *runningProxy {
	t.Helper()
	return startProxyWith(t, cp, nil)
}

// startProxyWith starts a proxy whose options edit may change (node, telemetry).
func startProxyWith(t *testing.T, cp *controlPlane, edit func(*proxy.Options)) *runningProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	adminCh := make(chan string, 1)
	p := &runningProxy{done: make(chan error, 1)}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	opts := proxy.Options{
		XDSAddress:       cp.addr,
		Node:             &model.Proxy{ID: nodeID, Workload: model.NamespacedName{Namespace: "default", Name: "client"}, Capture: model.CaptureNone, IP: "127.0.0.1"},
		AdminAddress:     "127.0.0.1:0",
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		OnAdminListening: func(a string) { adminCh <- a },
	}
	if edit != nil {
		edit(&opts)
	}
	p.node = opts.Node.ID
	go func() {
		p.done <- proxy.Run(ctx, opts)
	}()
	select {
	case p.admin = <-adminCh:
	case err := <-p.done:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("admin server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("proxy.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop")
		}
	})
	return p
}

func (p *runningProxy) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitVersion waits until the proxy's config dump shows the given CDS/LDS version.
func (p *runningProxy) waitVersion(t testing.TB, cp *controlPlane) {
	t.Helper()
	cp.mu.Lock()
	want := strconv.Itoa(cp.ver)
	cp.mu.Unlock()
	waitFor(t, "config version "+want, func() bool {
		code, body := p.get(t, "/config_dump")
		if code != 200 {
			return false
		}
		var dump struct {
			Types map[string]struct {
				Version string
				Names   []string
			} `json:"types"`
		}
		if err := json.Unmarshal([]byte(body), &dump); err != nil {
			return false
		}
		for _, ts := range dump.Types {
			// A type never received is fine only if nothing is subscribed (RDS before
			// its first answer has names and no version: the set is not applied yet).
			if ts.Version != want && (ts.Version != "" || len(ts.Names) > 0) {
				return false
			}
		}
		if dump.Types[rsrc.ListenerType].Version != want {
			return false
		}
		// On the first config, RDS has no version yet ("") while LDS already shows
		// want: the update is applied only once the routes arrive, which /ready tells.
		code, _ = p.get(t, "/ready")
		return code == 200
	})
}

func fmtURL(addr, path string) string { return fmt.Sprintf("http://%s%s", addr, path) }
