package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"skein.dev/skein/internal/proxy/stats"
)

func TestPprofBehindFlag(t *testing.T) {
	for _, tc := range []struct {
		pprof bool
		want  int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}} {
		srv := httptest.NewServer(Handler(Options{Metrics: stats.New(), Pprof: tc.pprof}))
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/allocs", "/debug/pprof/cmdline"} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("pprof=%v: GET %s = %d, want %d", tc.pprof, path, resp.StatusCode, tc.want)
			}
		}
		srv.Close()
	}
}
