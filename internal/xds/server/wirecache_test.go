package server

import (
	"context"
	"strings"
	"testing"
	"time"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"skein.dev/skein/internal/model"
)

// syncAll subscribes as the skein proxy does (CDS, EDS by name, LDS, RDS by name),
// ACKs each answer and returns the version and the EDS and RDS names.
func (c *adsClient) syncAll() (v string, edsNames, rdsNames []string) {
	c.t.Helper()
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.recv(resource.ClusterType)
	c.ack(cds, nil)
	edsNames = []string{"outbound|80||" + catalogHost}
	c.send(resource.EndpointType, edsNames, "", "", "")
	c.ack(c.recv(resource.EndpointType), edsNames)
	c.send(resource.ListenerType, nil, "", "", "")
	lds := c.recv(resource.ListenerType)
	c.ack(lds, nil)
	for _, l := range unpack(c.t, lds, func() *listener.Listener { return &listener.Listener{} }) {
		m := &hcm.HttpConnectionManager{}
		if l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m) == nil && m.GetRds() != nil {
			rdsNames = append(rdsNames, m.GetRds().GetRouteConfigName())
		}
	}
	c.send(resource.RouteType, rdsNames, "", "", "")
	c.ack(c.recv(resource.RouteType), rdsNames)
	return cds.GetVersionInfo(), edsNames, rdsNames
}

// TestOnlyChangedTypesAreResent: an endpoint-only change resends the endpoints alone;
// the other types keep their versions, and the node is in sync once EDS is ACKed.
func TestOnlyChangedTypesAreResent(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 2))
	p := frontendProxy()
	c := dialADS(t, addr, proxyNode(t, p))
	_, edsNames, _ := c.syncAll()
	eventually(t, "in sync at v1", func() bool { return statusOf(s, p.ID).InSync })
	st1 := statusOf(s, p.ID)

	s.Update(testMesh(2, 3))
	eds := c.recv(resource.EndpointType)
	v2 := eds.GetVersionInfo()
	if !strings.HasPrefix(v2, "2-") {
		t.Fatalf("EDS version %q, want generation 2", v2)
	}
	cla := unpack(t, eds, func() *endpoint.ClusterLoadAssignment { return &endpoint.ClusterLoadAssignment{} })
	if n := len(cla[0].GetEndpoints()[0].GetLbEndpoints()); n != 3 {
		t.Fatalf("got %d endpoints, want 3", n)
	}
	c.ack(eds, edsNames)
	eventually(t, "in sync at v2", func() bool {
		st := statusOf(s, p.ID)
		return st.InSync && st.Versions["EDS"] == v2
	})
	st := statusOf(s, p.ID)
	for _, typ := range []string{"CDS", "LDS", "RDS"} {
		if v1 := st1.Versions[typ]; st.Versions[typ] != v1 || st.Acked[typ] != v1 || !strings.HasPrefix(v1, "1-") {
			t.Errorf("%s: version %q acked %q, want both still %q", typ, st.Versions[typ], st.Acked[typ], v1)
		}
	}

	// Had CDS, LDS or RDS been resent at v2, they would come before the next EDS.
	s.Update(testMesh(3, 1))
	r, err := c.stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resource.EndpointType || !strings.HasPrefix(r.GetVersionInfo(), "3-") {
		t.Fatalf("next response: %s version %q, want EDS of generation 3", shortType(r.GetTypeUrl()), r.GetVersionInfo())
	}
}

// TestSharedResourcesMarshalledOnce: two nodes' snapshots reference the same bytes for
// a resource the translator shares, and a push does not marshal it again per node.
func TestSharedResourcesMarshalledOnce(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 2))
	a := frontendProxy()
	b := frontendProxy()
	b.ID = "frontend-1.default"
	ca := dialADS(t, addr, proxyNode(t, a))
	cb := dialADS(t, addr, proxyNode(t, b))
	ca.send(resource.EndpointType, []string{"outbound|80||" + catalogHost}, "", "", "")
	cb.send(resource.EndpointType, []string{"outbound|80||" + catalogHost}, "", "", "")
	ea, eb := ca.recv(resource.EndpointType), cb.recv(resource.EndpointType)
	if string(ea.GetResources()[0].GetValue()) != string(eb.GetResources()[0].GetValue()) {
		t.Fatal("the two nodes got different endpoint bytes")
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	ra := s.cache.nodes[a.ID].snap[resource.EndpointType].resources[0]
	rb := s.cache.nodes[b.ID].snap[resource.EndpointType].resources[0]
	if ra != rb {
		t.Error("the shared load assignment is held twice: marshalled per node")
	}
}

// TestDeltaADS: incremental xDS from the same cache: the first answer has every
// subscribed resource, a change sends only what changed, a removal is reported.
func TestDeltaADS(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 2))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := proxyNode(t, frontendProxy())
	recv := func() *discovery.DeltaDiscoveryResponse {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if r := recv(); len(r.GetResources()) != 2 {
		t.Fatalf("first CDS answer has %d clusters, want 2", len(r.GetResources()))
	}
	eds := "outbound|80||" + catalogHost
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{eds}}); err != nil {
		t.Fatal(err)
	}
	first := recv()
	if first.GetTypeUrl() != resource.EndpointType || len(first.GetResources()) != 1 || first.GetResources()[0].GetVersion() == "" {
		t.Fatalf("EDS answer = %v", first)
	}

	s.Update(testMesh(2, 3)) // endpoints only
	r := recv()
	if r.GetTypeUrl() != resource.EndpointType || len(r.GetResources()) != 1 || r.GetResources()[0].GetVersion() == first.GetResources()[0].GetVersion() {
		t.Fatalf("after an endpoint change got %s %v, want the one changed assignment", shortType(r.GetTypeUrl()), r.GetResources())
	}

	gone := testMesh(3, 1)
	gone.Services = nil // the service and its cluster disappear
	s.Update(gone)
	r = recv()
	if r.GetTypeUrl() != resource.ClusterType || len(r.GetRemovedResources()) != 1 || r.GetRemovedResources()[0] != eds {
		t.Fatalf("after removing the service got %s removed %v, want CDS removing %s", shortType(r.GetTypeUrl()), r.GetRemovedResources(), eds)
	}
}

// TestNewClusterNamedEndpoints: a push that adds a cluster holds the EDS answer until
// the request names the new assignment too (ADS), then answers it with both; an ACK
// of that answer is not answered again.
func TestNewClusterNamedEndpoints(t *testing.T) {
	s, addr := startServer(t, Options{Debounce: 5 * time.Millisecond})
	s.Update(testMesh(1, 1))
	c := dialADS(t, addr, proxyNode(t, frontendProxy()))
	_, edsNames, _ := c.syncAll()

	m := testMesh(2, 1)
	m.Services = append(m.Services, &model.Service{
		NamespacedName: model.NamespacedName{Namespace: "default", Name: "inventory"}, Selector: map[string]string{"app": "inventory"},
		Ports: []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP}},
	})
	m.Endpoints = append(m.Endpoints, model.Endpoint{Workload: model.NamespacedName{Namespace: "default", Name: "inventory-v1"},
		Labels: map[string]string{"app": "inventory"}, Address: "127.0.0.1", Port: 16500, TargetPort: 8080, Healthy: true})
	s.Update(m)
	cds := c.recv(resource.ClusterType)
	if n := len(cds.GetResources()); n != 3 {
		t.Fatalf("CDS after adding a service has %d clusters, want 3", n)
	}
	c.ack(cds, nil)
	// The EDS watch (old names) was not answered: the next EDS response is the one for
	// the request naming both assignments.
	both := append(append([]string(nil), edsNames...), "outbound|80||inventory.default.svc.cluster.local")
	c.send(resource.EndpointType, both, statusOf(s, "frontend-0.default").Acked["EDS"], "", "")
	eds := c.recv(resource.EndpointType)
	if n := len(eds.GetResources()); n != 2 || !strings.HasPrefix(eds.GetVersionInfo(), "2-") {
		t.Fatalf("EDS: %d assignments at %q, want 2 at generation 2", n, eds.GetVersionInfo())
	}
	c.ack(eds, both)
	// An ACK is not answered: the next response on the stream is the next change.
	s.Update(testMesh(3, 2))
	for {
		r, err := c.stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(r.GetVersionInfo(), "3-") {
			break
		}
		t.Fatalf("got %s %q before generation 3: an ACK was answered", shortType(r.GetTypeUrl()), r.GetVersionInfo())
	}
}
