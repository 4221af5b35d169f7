package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"skein.dev/skein/internal/echo"
)

// TestGRPCAndTCPThroughSidecars: a grpc-go client → client sidecar → server sidecar →
// grpc server, and a raw TCP echo, both through the per-upstream ports that `skein up`
// gives the client workload (Kubernetes-style <SVC>_SERVICE_PORT_<NAME> variables).
func TestGRPCAndTCPThroughSidecars(t *testing.T) {
	m := startMesh(t, copyDir(t, demoDir))
	env := m.execEnv("client")

	grpcAddr := net.JoinHostPort(env["CATALOG_SERVICE_HOST"], env["CATALOG_SERVICE_PORT_GRPC"])
	if env["CATALOG_SERVICE_PORT_GRPC"] == "" {
		t.Fatalf("client env has no CATALOG_SERVICE_PORT_GRPC: %v", env)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health through the mesh: %v %v\n%s", hr, err, m.logs())
	}
	seen := map[string]int{}
	for i := 0; i < 50; i++ {
		resp, err := echo.CallGRPC(ctx, conn, map[string]any{"message": "hi"})
		if err != nil {
			t.Fatalf("unary echo %d: %v", i, err)
		}
		w, _ := resp["workload"].(string)
		seen[w]++
	}
	if seen["catalog-v1"]+seen["catalog-v2"] != 50 {
		t.Errorf("gRPC calls reached %v, want only catalog-v1/v2", seen)
	}
	msgs, err := echo.StreamGRPC(ctx, conn, map[string]any{"count": 5})
	if err != nil || len(msgs) != 5 {
		t.Errorf("server stream through the mesh: %d messages, err %v", len(msgs), err)
	}

	// Raw TCP echo with half-close.
	tcpAddr := net.JoinHostPort(env["TCP_ECHO_SERVICE_HOST"], env["TCP_ECHO_SERVICE_PORT_TCP"])
	if env["TCP_ECHO_SERVICE_PORT_TCP"] == "" {
		t.Fatalf("client env has no TCP_ECHO_SERVICE_PORT_TCP: %v", env)
	}
	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := strings.Repeat("skein tcp ", 10000)
	go func() {
		_, _ = io.WriteString(c, payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != payload {
		t.Errorf("tcp echo through the mesh: got %d bytes (want %d), err %v", len(got), len(payload), err)
	}
}
