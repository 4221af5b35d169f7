package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/runtime/local"
	"skein.dev/skein/internal/xds/server"
	"skein.dev/skein/internal/xds/translate"
)

const soloConfig = `apiVersion: v1
kind: Service
metadata: {name: solo, namespace: default}
spec:
  selector: {app: solo}
  ports: [{name: http, port: 8080}]
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: solo, namespace: default, labels: {app: solo}}
spec:
  command: ["skein", "echo"]
  ports: [{name: http, containerPort: 8080}]
`

// TestUnsupportedFieldIsNACKedAndShown serves a sidecar a Listener with a field the skein
// proxy does not implement: the proxy must NACK naming the field, and `skein status`
// must show that message and report the mesh not ready.
func TestUnsupportedFieldIsNACKedAndShown(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "solo.yaml"), []byte(soloConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	srvCh := make(chan *server.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- local.Run(ctx, local.Options{
			ConfigDir: dir, StateDir: state, Isolation: "none", Self: skeinBin,
			OnServer: func(s *server.Server) { srvCh <- s },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("local.Run did not stop")
		}
	})
	srv := <-srvCh
	if out, err := exec.Command(skeinBin, "status", "--state-dir", state, "--wait", "60s").CombinedOutput(); err != nil {
		t.Fatalf("not ready: %v\n%s", err, out)
	}

	tcp, _ := anypb.New(&tcpproxy.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: "x"}})
	bad := &listener.Listener{
		Name: "unsupported",
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 1}}}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(1024),
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name: "envoy.filters.network.tcp_proxy", ConfigType: &listener.Filter_TypedConfig{TypedConfig: tcp}}}}},
	}
	srv.Override("solo-0.default", &translate.Resources{Listeners: []types.Resource{bad}})

	var st api.Status
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command(skeinBin, "status", "--state-dir", state, "-o", "json").Output()
		st = api.Status{}
		if json.Unmarshal(out, &st) == nil && len(st.Proxies) > 0 && st.Proxies[0].NACK != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(st.Proxies) == 0 || st.Proxies[0].NACK == nil {
		t.Fatalf("no NACK in status: %+v", st)
	}
	if msg := st.Proxies[0].NACK.Message; !strings.Contains(msg, "per_connection_buffer_limit_bytes") {
		t.Errorf("NACK message should name the field; got %q", msg)
	}
	if st.Ready {
		t.Error("status must not be ready while a proxy rejects its config")
	}
	out, err := exec.Command(skeinBin, "status", "--state-dir", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "per_connection_buffer_limit_bytes") {
		t.Errorf("skein status should fail and show the NACK; err %v, output:\n%s", err, out)
	}
}
