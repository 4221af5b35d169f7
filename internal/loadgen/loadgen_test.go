package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunCountsStatusAndBackends(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if r.Header.Get("x-test") != "yes" {
			http.Error(w, "missing header", http.StatusBadRequest)
			return
		}
		if i%10 == 0 {
			http.Error(w, "boom", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"workload":"w%d"}`, i%2)
	}))
	defer srv.Close()
	s := Run(context.Background(), Options{
		URL: srv.URL, Requests: 100, Concurrency: 4,
		Headers: http.Header{"X-Test": {"yes"}}, Client: srv.Client(),
	})
	if diff := cmp.Diff(map[int]int{200: 90, 503: 10}, s.Status); diff != "" {
		t.Errorf("status counts (-want +got):\n%s", diff)
	}
	if s.Backends["w0"]+s.Backends["w1"] != 90 || s.Backends["w0"] == 0 || s.Backends["w1"] == 0 {
		t.Errorf("backends = %v", s.Backends)
	}
	if s.Failed() != 10 {
		t.Errorf("Failed() = %d, want 10", s.Failed())
	}
}

func TestRunCountsTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	s := Run(context.Background(), Options{URL: url, Requests: 3})
	if s.Errors != 3 || len(s.FirstErrors) == 0 || s.Failed() != 3 {
		t.Errorf("summary = %+v, want 3 transport errors", s)
	}
}
