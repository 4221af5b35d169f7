package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
)

func TestPeerExchangeRoundTrip(t *testing.T) {
	local := LocalPeer(&model.Proxy{Workload: model.NamespacedName{Namespace: "shop", Name: "catalog-v2"}, Labels: map[string]string{"app": "catalog", "version": "v2"}})
	local.Principal = "spiffe://x" // never sent
	var ps Peers
	got := ps.Decode(EncodePeer(local))
	want := &streaminfo.Peer{Workload: "catalog-v2", Namespace: "shop", App: "catalog", Version: "v2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if again := ps.Decode(EncodePeer(local)); again != got {
		t.Errorf("the same header was not interned")
	}
	for _, bad := range []string{"", "%%%", "bm90IGpzb24="} {
		if p := ps.Decode(bad); p != nil {
			t.Errorf("Decode(%q) = %+v, want nil", bad, p)
		}
	}
}

func TestServices(t *testing.T) {
	var s Services
	tests := []struct {
		name string
		got  *streaminfo.Service
		want *streaminfo.Service
	}{
		{"outbound cluster", s.ForCluster("outbound|8080|v1|catalog.default.svc.cluster.local"), &streaminfo.Service{Host: "catalog.default.svc.cluster.local", Name: "catalog", Namespace: "default"}},
		{"inbound cluster", s.ForCluster("inbound|8080||"), nil},
		{"short name", s.ForAuthority("catalog:8080", "shop"), &streaminfo.Service{Host: "catalog.shop.svc.cluster.local", Name: "catalog", Namespace: "shop"}},
		{"name.ns", s.ForAuthority("catalog.other", "shop"), &streaminfo.Service{Host: "catalog.other.svc.cluster.local", Name: "catalog", Namespace: "other"}},
		{"name.ns.svc", s.ForAuthority("catalog.other.svc:80", "shop"), &streaminfo.Service{Host: "catalog.other.svc.cluster.local", Name: "catalog", Namespace: "other"}},
		{"fqdn", s.ForAuthority("Catalog.other.svc.cluster.local", "shop"), &streaminfo.Service{Host: "catalog.other.svc.cluster.local", Name: "catalog", Namespace: "other"}},
		{"external", s.ForAuthority("api.example.com:443", "shop"), &streaminfo.Service{Host: "api.example.com", Name: "api.example.com", Namespace: "unknown"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestDropLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricsOptions{DropLabels: []string{"source_principal", "destination_principal", "response_flags"}})
	if err != nil {
		t.Fatal(err)
	}
	info := streaminfo.New("inbound|8080", streaminfo.Inbound, streaminfo.ProtocolHTTP)
	info.ResponseCode, info.Duration = 200, 3*time.Millisecond
	local := &streaminfo.Peer{Workload: "w"}
	m.ObserveHTTP(info, local)
	m.ObserveHTTP(info, local)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	text := b.String()
	for _, dropped := range []string{"source_principal", "destination_principal", "response_flags"} {
		if strings.Contains(text, dropped+"=") {
			t.Errorf("label %s not dropped:\n%s", dropped, text)
		}
	}
	if !strings.Contains(text, `reporter="destination"`) || !strings.Contains(text, "} 2\n") {
		t.Errorf("want two requests reported by destination:\n%s", text)
	}
	if m.Children() != 1 {
		t.Errorf("children = %d, want 1 (one label combination)", m.Children())
	}
	for _, bad := range [][]string{{"reporter"}, {"no_such_label"}} {
		if _, err := NewMetrics(prometheus.NewRegistry(), MetricsOptions{DropLabels: bad}); err == nil {
			t.Errorf("DropLabels %v accepted", bad)
		}
	}
}

func TestObserveHTTPDoesNotAllocate(t *testing.T) {
	m, _ := NewMetrics(prometheus.NewRegistry(), MetricsOptions{})
	local := &streaminfo.Peer{Workload: "w"}
	info := streaminfo.New("outbound_http_proxy", streaminfo.Outbound, streaminfo.ProtocolHTTP)
	info.ResponseCode, info.Service = 200, &streaminfo.Service{Host: "a.b.svc.cluster.local"}
	m.ObserveHTTP(info, local)
	if n := testing.AllocsPerRun(200, func() { m.ObserveHTTP(info, local) }); n != 0 {
		t.Errorf("ObserveHTTP allocates %v times per request for a known label combination", n)
	}
}
