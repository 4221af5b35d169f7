package proxy_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestGRPCAndH2C(t *testing.T) {
	cp := startControlPlane(t)
	hs := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(gln) }()
	t.Cleanup(gs.Stop)
	h2 := startBackend(t, "h2", true)

	grpcAddr, h2cAddr := freeAddr(t), freeAddr(t)
	const grpcCluster, h2Cluster = "outbound|9090||greeter.default.svc.cluster.local", "outbound|8080||h2.default.svc.cluster.local"
	rc := func(name, cluster string) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
			Name: name, Domains: []string{"*"},
			Routes: []*routev3.Route{
				{Name: "unknown-method", Match: prefixMatch("/nope."), Action: toCluster(cluster)},
				{Name: "default", Match: prefixMatch("/grpc.health"), Action: toCluster(cluster)},
				{Name: "h2", Match: prefixMatch("/h2"), Action: toCluster(cluster)},
			},
		}}}
	}
	px := startProxy(t, cp)
	cp.set(t, snapshot{
		listeners: []types.Resource{
			httpListener(t, "outbound|9090|greeter.default.svc.cluster.local", grpcAddr, "outbound|9090|greeter.default.svc.cluster.local"),
			httpListener(t, "outbound|8080|h2.default.svc.cluster.local", h2cAddr, "outbound|8080|h2.default.svc.cluster.local"),
		},
		routes: []types.Resource{
			rc("outbound|9090|greeter.default.svc.cluster.local", grpcCluster),
			rc("outbound|8080|h2.default.svc.cluster.local", h2Cluster),
		},
		clusters: []types.Resource{
			edsCluster(t, grpcCluster, true, clusterv3.Cluster_ROUND_ROBIN),
			edsCluster(t, h2Cluster, true, clusterv3.Cluster_ROUND_ROBIN),
		},
		endpoints: []types.Resource{endpoints(grpcCluster, gln.Addr().String()), endpoints(h2Cluster, h2.addr())},
	})
	px.waitVersion(t, cp)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		// grpc-status travels in the HTTP/2 trailers; a lost trailer fails the RPC.
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, %v; want SERVING", resp, err)
		}
	})
	t.Run("backend status preserved", func(t *testing.T) {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("Check(unknown) = %v, want NotFound from the backend", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "greeter"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("first = %v, %v", first, err)
		}
		// The second message only arrives if the proxy flushes each frame at once.
		hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
		second, err := stream.Recv()
		if err != nil || second.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("second = %v, %v", second, err)
		}
	})
	t.Run("proxy errors are gRPC statuses", func(t *testing.T) {
		err := conn.Invoke(ctx, "/other.Service/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("no route: %v, want Unimplemented", err)
		}
		gs.Stop() // the backend is gone: connect failure
		_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("dead backend: %v, want Unavailable", err)
		}
	})
	t.Run("h2c downstream and upstream", func(t *testing.T) {
		tr := &http.Transport{}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		code, reply := request(t, &http.Client{Transport: tr}, "GET", fmtURL(h2cAddr, "/h2/x"), "h2", nil)
		if code != 200 || reply.Proto != "HTTP/2.0" || reply.Backend != "h2" {
			t.Fatalf("got %d %+v, want 200 over HTTP/2.0 from h2", code, reply)
		}
		// HTTP/1.1 on the same port still works (codec AUTO).
		code, reply = request(t, http.DefaultClient, "GET", fmtURL(h2cAddr, "/h2/y"), "h2", nil)
		if code != 200 || reply.Proto != "HTTP/2.0" {
			t.Fatalf("HTTP/1.1 downstream: got %d %+v", code, reply)
		}
	})
}
