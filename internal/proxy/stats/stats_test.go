package stats

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestObserveRequestCounts(t *testing.T) {
	m := New()
	for range 3 {
		m.ObserveRequest("outbound|8080||catalog.default.svc.cluster.local", "default", 200, time.Millisecond)
	}
	m.ObserveRequest("outbound|8080||catalog.default.svc.cluster.local", "default", 503, time.Millisecond)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "skein_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = metric.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"cluster=outbound|8080||catalog.default.svc.cluster.local,response_code=200,route=default": 3,
		"cluster=outbound|8080||catalog.default.svc.cluster.local,response_code=503,route=default": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("skein_requests_total (-want +got):\n%s", diff)
	}
}

// BenchmarkObserveRequest: the per-request metrics cost (counter + histogram on a
// cached child), from all cores at once as the proxy records it.
func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest("outbound|8080||catalog.default.svc.cluster.local", "default", 200, 1500*time.Microsecond)
		}
	})
}
