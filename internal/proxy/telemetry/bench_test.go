package telemetry

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// BenchmarkFinishHTTP: the per-request metrics cost on the proxy's path (the Istio
// standard requests_total, duration and size histograms on a cached child), from all
// cores at once, as the forwarder records a finished outbound request.
func BenchmarkFinishHTTP(b *testing.B) {
	h, err := New(Options{
		Node: &model.Proxy{ID: "frontend-0.shop", Workload: model.NamespacedName{Namespace: "shop", Name: "frontend"},
			Labels: map[string]string{"app": "frontend", "version": "v1"}, ServiceAccount: "frontend"},
		Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	// Peers and services come from the hub's caches, one pointer per distinct value, as
	// on the forwarder's path (metric children are keyed by those pointers).
	up := h.Peers.Decode(EncodePeer(&streaminfo.Peer{Workload: "catalog-v1", Namespace: "shop", App: "catalog", Version: "v1"}))
	svc := h.Services.ForCluster("outbound|8080||catalog.shop.svc.cluster.local")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		info := streaminfo.New("outbound_http_proxy", streaminfo.Outbound, streaminfo.ProtocolHTTP)
		for pb.Next() {
			info.Duration, info.ResponseCode, info.BytesReceived, info.BytesSent = 1500*time.Microsecond, 200, 1024, 1024
			info.Cluster = "outbound|8080||catalog.shop.svc.cluster.local"
			info.Service = svc
			info.DownstreamPeer, info.UpstreamPeer = h.Local, up
			h.FinishHTTP(info)
		}
	})
}
