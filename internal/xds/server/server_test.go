package server

import (
	"net/http/httptest"

	"context"
	"encoding/json"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/translate"
)

const catalogHost = "catalog.default.svc.cluster.local"

// testMesh has one HTTP service with n healthy replicas.
func testMesh(gen int64, replicas int) *model.Mesh {
	m := &model.Mesh{
		Generation: gen,
		Services: []*model.Service{{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "catalog"},
			Selector:       map[string]string{"app": "catalog"},
			Ports:          []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP}},
		}},
	}
	for i := range replicas {
		m.Endpoints = append(m.Endpoints, model.Endpoint{
			Workload: model.NamespacedName{Namespace: "default", Name: "catalog-v1"}, Replica: i,
			Labels: map[string]string{"app": "catalog"}, Address: "127.0.0.1", Port: 16000 + i, TargetPort: 8080, Healthy: true,
		})
	}
	return m
}

func frontendProxy() *model.Proxy {
	return &model.Proxy{
		ID: "frontend-0.default", Role: model.RoleSidecar, Capture: model.CaptureNone,
		Workload: model.NamespacedName{Namespace: "default", Name: "frontend"},
		Labels:   map[string]string{"app": "frontend"}, IP: "127.0.0.1",
		InboundPorts: map[int]int{3000: 16100}, OutboundHTTPPort: 15001,
		UpstreamPorts: map[string]int{model.UpstreamKey(catalogHost, 80): 17000},
	}
}

func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := New(opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, lis.Addr().String()
}

// adsClient is a minimal state-of-the-world ADS client, written for the test.
type adsClient struct {
	t       *testing.T
	stream  discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node    *core.Node
	pending []*discovery.DiscoveryResponse
	cancel  context.CancelFunc
}

func dialADS(t *testing.T, addr string, node *core.Node) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &adsClient{t: t, stream: stream, node: node, cancel: cancel}
}

func proxyNode(t *testing.T, p *model.Proxy) *core.Node {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{ProxyMetadataKey: string(b)})
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: p.ID, Cluster: p.Workload.String(), Metadata: md}
}

func (c *adsClient) send(typeURL string, names []string, version, nonce, nack string) {
	c.t.Helper()
	req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if nack != "" {
		req.ErrorDetail = &status.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send %s: %v", typeURL, err)
	}
}

// recv returns the next response of a type; responses of other types are kept.
func (c *adsClient) recv(typeURL string) *discovery.DiscoveryResponse {
	c.t.Helper()
	for i, r := range c.pending {
		if r.GetTypeUrl() == typeURL {
			c.pending = slices.Delete(c.pending, i, i+1)
			return r
		}
	}
	for {
		r, err := c.stream.Recv()
		if err != nil {
			c.t.Fatalf("recv %s: %v", typeURL, err)
		}
		if r.GetTypeUrl() == typeURL {
			return r
		}
		c.pending = append(c.pending, r)
	}
}

// ack acknowledges a response, keeping the subscription.
func (c *adsClient) ack(r *discovery.DiscoveryResponse, names []string) {
	c.send(r.GetTypeUrl(), names, r.GetVersionInfo(), r.GetNonce(), "")
}

func unpack[T proto.Message](t *testing.T, r *discovery.DiscoveryResponse, newT func() T) []T {
	t.Helper()
	var out []T
	for _, a := range r.GetResources() {
		m := newT()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func names[T interface{ GetName() string }](items []T) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.GetName())
	}
	sort.Strings(out)
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withProtocol sets the protocol of every service port.
func withProtocol(m *model.Mesh, p model.Protocol) *model.Mesh {
	for _, svc := range m.Services {
		for i := range svc.Ports {
			svc.Ports[i].Protocol = p
		}
	}
	return m
}

// ackChanged receives and ACKs the EDS, LDS and RDS responses of generation gen: those
// whose type the node's snapshot changed then (the others are not resent).
func (c *adsClient) ackChanged(s *Server, id, gen string, edsNames, rdsNames []string) {
	c.t.Helper()
	st := statusOf(s, id)
	for _, r := range []struct {
		typ   string
		names []string
	}{{resource.EndpointType, edsNames}, {resource.ListenerType, nil}, {resource.RouteType, rdsNames}} {
		v := st.Versions[shortType(r.typ)]
		if !strings.HasPrefix(v, gen+"-") {
			continue
		}
		resp := c.recv(r.typ)
		if resp.GetVersionInfo() != v {
			c.t.Fatalf("%s version %q, want %q", shortType(r.typ), resp.GetVersionInfo(), v)
		}
		c.ack(resp, r.names)
	}
}

func statusOf(s *Server, id string) ProxyStatus {
	for _, st := range s.Status() {
		if st.ID == id {
			return st
		}
	}
	return ProxyStatus{}
}

func TestADSFlowAckNack(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 10 * time.Millisecond})
	s.Update(testMesh(1, 2))
	p := frontendProxy()
	c := dialADS(t, addr, proxyNode(t, p))

	// CDS (wildcard)
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.recv(resource.ClusterType)
	clusters := unpack(t, cds, func() *cluster.Cluster { return &cluster.Cluster{} })
	wantClusters := []string{"inbound|3000||", "outbound|80||" + catalogHost}
	if diff := cmp.Diff(wantClusters, names(clusters)); diff != "" {
		t.Fatalf("clusters (-want +got):\n%s", diff)
	}
	c.ack(cds, nil)
	v1 := cds.GetVersionInfo()

	// EDS for the EDS clusters
	var edsNames []string
	for _, cl := range clusters {
		if cl.GetType() == cluster.Cluster_EDS {
			edsNames = append(edsNames, cl.GetName())
		}
	}
	c.send(resource.EndpointType, edsNames, "", "", "")
	eds := c.recv(resource.EndpointType)
	claList := unpack(t, eds, func() *endpoint.ClusterLoadAssignment { return &endpoint.ClusterLoadAssignment{} })
	if len(claList) != 1 || len(claList[0].GetEndpoints()[0].GetLbEndpoints()) != 2 {
		t.Fatalf("endpoints = %v, want one assignment with 2 endpoints", claList)
	}
	c.ack(eds, edsNames)

	// LDS (wildcard), then RDS for the names the HCMs reference
	c.send(resource.ListenerType, nil, "", "", "")
	lds := c.recv(resource.ListenerType)
	listeners := unpack(t, lds, func() *listener.Listener { return &listener.Listener{} })
	wantListeners := []string{"inbound|3000", "outbound_http_proxy", "outbound|80|" + catalogHost}
	if diff := cmp.Diff(wantListeners, names(listeners)); diff != "" {
		t.Fatalf("listeners (-want +got):\n%s", diff)
	}
	c.ack(lds, nil)
	var rdsNames []string
	for _, l := range listeners {
		m := &hcm.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
			continue // tcp_proxy
		}
		if rds := m.GetRds(); rds != nil {
			rdsNames = append(rdsNames, rds.GetRouteConfigName())
		}
	}
	sort.Strings(rdsNames)
	c.send(resource.RouteType, rdsNames, "", "", "")
	rds := c.recv(resource.RouteType)
	routes := unpack(t, rds, func() *route.RouteConfiguration { return &route.RouteConfiguration{} })
	if diff := cmp.Diff(rdsNames, names(routes)); diff != "" {
		t.Fatalf("routes (-want +got):\n%s", diff)
	}
	c.ack(rds, rdsNames)

	eventually(t, "in sync at v1", func() bool { st := statusOf(s, p.ID); return st.InSync && st.Versions["CDS"] == v1 })
	st := statusOf(s, p.ID)
	if !st.Connected || st.Proxy == nil || st.Proxy.OutboundHTTPPort != 15001 || !strings.HasPrefix(st.Version, "1-") {
		t.Fatalf("status = %+v", st)
	}

	// A new mesh (the service now speaks HTTP/2: the clusters change) reaches every
	// type it changes; the client rejects the clusters.
	s.Update(withProtocol(testMesh(2, 3), model.ProtocolHTTP2))
	cds2 := c.recv(resource.ClusterType)
	v2 := cds2.GetVersionInfo()
	if v2 == v1 || !strings.HasPrefix(v2, "2-") {
		t.Fatalf("version after update = %q (was %q)", v2, v1)
	}
	const msg = "unsupported field envoy.config.cluster.v3.Cluster.dns_lookup_family"
	c.send(resource.ClusterType, nil, v1, cds2.GetNonce(), msg)
	c.ackChanged(s, p.ID, "2", edsNames, rdsNames)
	eventually(t, "NACK in status", func() bool { return statusOf(s, p.ID).NACK != nil })
	st = statusOf(s, p.ID)
	wantNACK := &NACK{TypeURL: resource.ClusterType, Version: v2, Message: msg}
	if diff := cmp.Diff(wantNACK, st.NACK, cmpIgnoreTime); diff != "" {
		t.Errorf("NACK (-want +got):\n%s", diff)
	}
	eventually(t, "other types ACKed", func() bool {
		st := statusOf(s, p.ID)
		return st.Acked["EDS"] == st.Versions["EDS"] && st.Acked["LDS"] == st.Versions["LDS"] && st.Acked["RDS"] == st.Versions["RDS"]
	})
	if st := statusOf(s, p.ID); st.InSync || st.Acked["CDS"] != v1 {
		t.Errorf("after NACK: InSync=%v Acked[CDS]=%q, want false, %q", st.InSync, st.Acked["CDS"], v1)
	}

	// The next clusters the client sees are the next version, not a resend of the
	// rejected one; ACKing it clears the NACK.
	s.Update(testMesh(3, 1))
	cds3 := c.recv(resource.ClusterType)
	v3 := cds3.GetVersionInfo()
	if !strings.HasPrefix(v3, "3-") {
		t.Fatalf("after NACK got clusters version %q, want the generation 3 version", v3)
	}
	c.ack(cds3, nil)
	c.ackChanged(s, p.ID, "3", edsNames, rdsNames)
	eventually(t, "in sync at v3", func() bool {
		st := statusOf(s, p.ID)
		return st.InSync && st.Versions["CDS"] == v3 && st.NACK == nil
	})

	// The control plane's own metrics, parsed with the Prometheus text parser.
	fams := scrape(t, s)
	value := func(name, label, want string) float64 {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() != want {
					goto next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		next:
		}
		return -1
	}
	if got := value("pilot_xds", "", ""); got != 1 {
		t.Errorf("pilot_xds = %v, want 1 connected proxy", got)
	}
	if got := value("pilot_total_xds_rejects", "type", "cds"); got != 1 {
		t.Errorf("pilot_total_xds_rejects{cds} = %v, want 1", got)
	}
	if got := value("pilot_xds_pushes", "type", "cds"); got < 3 {
		t.Errorf("pilot_xds_pushes{cds} = %v, want >= 3", got)
	}
	if got := value("pilot_proxy_convergence_time", "", ""); got < 2 {
		t.Errorf("pilot_proxy_convergence_time count = %v, want >= 2 pushes", got)
	}

	c.cancel()
	eventually(t, "disconnected", func() bool { st := statusOf(s, p.ID); return !st.Connected && st.Versions["CDS"] == v3 })
	if got := scrape(t, s)["pilot_xds"].GetMetric()[0].GetGauge().GetValue(); got != 0 {
		t.Errorf("pilot_xds after disconnect = %v, want 0", got)
	}
}

func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

var cmpIgnoreTime = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".At" }, cmp.Ignore())

// TestFirstRequestDoesNotWaitForDebounce: a node's first snapshot is built on its
// first request, even if the debounced push is an hour away.
func TestFirstRequestDoesNotWaitForDebounce(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: time.Hour})
	s.Update(testMesh(7, 1))
	c := dialADS(t, addr, proxyNode(t, frontendProxy()))
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.recv(resource.ClusterType)
	if !strings.HasPrefix(cds.GetVersionInfo(), "7-") || len(cds.GetResources()) != 2 {
		t.Fatalf("got version %q with %d clusters", cds.GetVersionInfo(), len(cds.GetResources()))
	}
}

// TestGenericNode: a node without metadata (like grpc-go) gets outbound clusters and
// endpoints; a translation error keeps its previous snapshot and shows in Status.
func TestGenericNode(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 2))
	c := dialADS(t, addr, &core.Node{Id: "grpc-client", Cluster: "x"})
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.recv(resource.ClusterType)
	clusters := unpack(t, cds, func() *cluster.Cluster { return &cluster.Cluster{} })
	if diff := cmp.Diff([]string{"outbound|80||" + catalogHost}, names(clusters)); diff != "" {
		t.Fatalf("clusters (-want +got):\n%s", diff)
	}
	c.ack(cds, nil)
	edsNames := []string{"outbound|80||" + catalogHost}
	c.send(resource.EndpointType, edsNames, "", "", "")
	eds := c.recv(resource.EndpointType)
	if n := len(eds.GetResources()); n != 1 {
		t.Fatalf("got %d assignments", n)
	}
	c.ack(eds, edsNames)
	c.send(resource.ListenerType, nil, "", "", "")
	if lds := c.recv(resource.ListenerType); len(lds.GetResources()) != 0 {
		t.Fatalf("generic node got %d listeners", len(lds.GetResources()))
	}
	st := statusOf(s, "grpc-client")
	if st.Proxy != nil || !st.Connected {
		t.Fatalf("status = %+v", st)
	}

	// A VirtualService that cannot be translated: status shows it, version stays.
	bad := testMesh(2, 2)
	bad.Services = append(bad.Services, &model.Service{
		NamespacedName: model.NamespacedName{Namespace: "default", Name: "multi"},
		Ports:          []model.ServicePort{{Port: 1, Protocol: model.ProtocolHTTP}, {Port: 2, Protocol: model.ProtocolHTTP}},
	})
	bad.VirtualServices = []*model.VirtualService{{
		NamespacedName: model.NamespacedName{Namespace: "default", Name: "bad"},
		Hosts:          []string{catalogHost},
		HTTP:           []model.HTTPRoute{{Destinations: []model.RouteDestination{{Host: "multi.default.svc.cluster.local", Weight: 100}}}},
	}}
	s.Update(bad)
	eventually(t, "translation error in status", func() bool { return statusOf(s, "grpc-client").Error != "" })
	if got := statusOf(s, "grpc-client"); got.Versions["CDS"] != cds.GetVersionInfo() || !strings.Contains(got.Error, "port required") {
		t.Errorf("status = %+v, want version %q kept and a port error", got, cds.GetVersionInfo())
	}
	if s.LastError() == nil {
		t.Error("LastError() = nil after a failed translation")
	}
}

// TestDebounce: a burst of Updates is coalesced into few pushes, the last mesh wins.
func TestDebounce(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 50 * time.Millisecond})
	s.Update(testMesh(0, 1))
	c := dialADS(t, addr, proxyNode(t, frontendProxy()))
	c.send(resource.ClusterType, nil, "", "", "")
	c.ack(c.recv(resource.ClusterType), nil)

	for gen := int64(1); gen <= 100; gen++ {
		s.Update(testMesh(gen, 1+int(gen%3)))
	}
	eventually(t, "last generation pushed", func() bool {
		return strings.HasPrefix(statusOf(s, "frontend-0.default").Version, "100-")
	})
	s.mu.Lock()
	pushes := s.pushes
	s.mu.Unlock()
	if pushes < 1 || pushes > 10 {
		t.Errorf("100 updates caused %d pushes, want a few", pushes)
	}
}

// TestUnchangedContentIsNotRepushed: a new generation with the same resources keeps
// the node's version.
func TestUnchangedContentIsNotRepushed(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 1))
	c := dialADS(t, addr, proxyNode(t, frontendProxy()))
	c.send(resource.ClusterType, nil, "", "", "")
	v1 := c.recv(resource.ClusterType).GetVersionInfo()
	s.Update(testMesh(2, 1))
	eventually(t, "push of generation 2", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pushedGeneration == 2
	})
	if got := statusOf(s, "frontend-0.default").Versions["CDS"]; got != v1 {
		t.Errorf("version = %q, want unchanged %q", got, v1)
	}
}

// TestOverride pins arbitrary resources on a node until released.
func TestOverride(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 1))
	custom := &translate.Resources{Clusters: []types.Resource{&cluster.Cluster{
		Name: "custom", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
	}}}
	if err := s.Override("frontend-0.default", custom); err != nil {
		t.Fatal(err)
	}
	c := dialADS(t, addr, proxyNode(t, frontendProxy()))
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.recv(resource.ClusterType)
	if got := names(unpack(t, cds, func() *cluster.Cluster { return &cluster.Cluster{} })); !slices.Equal(got, []string{"custom"}) {
		t.Fatalf("clusters = %v, want [custom]", got)
	}
	c.ack(cds, nil)
	if err := s.Override("frontend-0.default", nil); err != nil {
		t.Fatal(err)
	}
	cds = c.recv(resource.ClusterType)
	if len(cds.GetResources()) != 2 {
		t.Fatalf("after release got %d clusters, want the translated 2", len(cds.GetResources()))
	}
}

// TestProxylessNode: a generic client that names listeners (grpc-go names its dial
// target) gets an API listener for each name it can resolve, and exactly the clusters
// and endpoints those routes reach, so the ADS cache answers its named requests.
func TestProxylessNode(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 2))
	c := dialADS(t, addr, &core.Node{Id: "grpc-client", Cluster: "x"})
	target := catalogHost + ":80"
	c.send(resource.ListenerType, []string{target, "unknown.default.svc.cluster.local:1"}, "", "", "")
	lds := c.recv(resource.ListenerType)
	lis := unpack(t, lds, func() *listener.Listener { return &listener.Listener{} })
	if diff := cmp.Diff([]string{target}, names(lis)); diff != "" || lis[0].GetApiListener() == nil {
		t.Fatalf("listeners (-want +got):\n%s\n%v", diff, lis)
	}
	clusterNames := []string{"outbound|80||" + catalogHost}
	c.send(resource.ClusterType, clusterNames, "", "", "")
	cds := c.recv(resource.ClusterType)
	if n := len(cds.GetResources()); n != 1 {
		t.Fatalf("got %d clusters for a named request", n)
	}
	c.send(resource.EndpointType, clusterNames, "", "", "")
	if eds := c.recv(resource.EndpointType); len(eds.GetResources()) != 1 {
		t.Fatalf("got %d assignments", len(eds.GetResources()))
	}
}

// TestProxylessStreamPerTarget: grpc-go opens one ADS stream per dial target, all with
// the bootstrap's node id. Each stream gets its own target's listener, and both follow
// a push; the second stream's node ("<id>/stream-<n>") goes away with its stream.
func TestProxylessStreamPerTarget(t *testing.T) {
	mesh := func(gen int64, timeout time.Duration) *model.Mesh {
		m := testMesh(gen, 1)
		m.Services = append(m.Services, &model.Service{
			NamespacedName: model.NamespacedName{Namespace: "default", Name: "inventory"},
			Selector:       map[string]string{"app": "inventory"},
			Ports:          []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
		})
		for _, h := range []string{catalogHost, "inventory.default.svc.cluster.local"} {
			m.VirtualServices = append(m.VirtualServices, &model.VirtualService{
				NamespacedName: model.NamespacedName{Namespace: "default", Name: strings.Split(h, ".")[0]},
				Hosts:          []string{h},
				HTTP:           []model.HTTPRoute{{Destinations: []model.RouteDestination{{Host: h, Weight: 100}}, Timeout: timeout}},
			})
		}
		return m
	}
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(mesh(1, time.Second))
	node := &core.Node{Id: "grpc-app", Cluster: "x"}
	targets := []string{catalogHost + ":80", "inventory.default.svc.cluster.local:80"}
	var clients []*adsClient
	for _, target := range targets {
		c := dialADS(t, addr, node)
		c.send(resource.ListenerType, []string{target}, "", "", "")
		lds := c.recv(resource.ListenerType)
		if got := names(unpack(t, lds, func() *listener.Listener { return &listener.Listener{} })); !slices.Equal(got, []string{target}) {
			t.Fatalf("stream for %s got listeners %v", target, got)
		}
		c.ack(lds, []string{target})
		clients = append(clients, c)
	}
	s.Update(mesh(2, 2*time.Second))
	for i, c := range clients {
		lds := c.recv(resource.ListenerType)
		if !strings.HasPrefix(lds.GetVersionInfo(), "2-") || len(lds.GetResources()) != 1 {
			t.Fatalf("stream for %s after the push: version %q, %d listeners", targets[i], lds.GetVersionInfo(), len(lds.GetResources()))
		}
		c.ack(lds, []string{targets[i]})
	}
	var ids []string
	for _, st := range s.Status() {
		ids = append(ids, st.ID)
	}
	if len(ids) != 2 || ids[0] != "grpc-app" || !strings.HasPrefix(ids[1], "grpc-app/stream-") {
		t.Fatalf("nodes %v, want grpc-app and grpc-app/stream-<n>", ids)
	}
	clients[1].cancel()
	eventually(t, "the second stream's node to go", func() bool { return len(s.Status()) == 1 })
	if st := statusOf(s, "grpc-app"); !st.Connected {
		t.Errorf("grpc-app: %+v, want still connected", st)
	}
}
