package tracing

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/testutil/otlp"
)

// collector records span names sent by the otlp-http or zipkin exporter.
type collector struct {
	mu    sync.Mutex
	names []string
}

func (c *collector) add(n string) {
	c.mu.Lock()
	c.names = append(c.names, n)
	c.mu.Unlock()
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.names...)
}

func startHTTPCollector(t *testing.T) (*collector, *httptest.Server) {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/traces": // OTLP/HTTP protobuf
			var req collectortrace.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for _, rs := range req.GetResourceSpans() {
				for _, ss := range rs.GetScopeSpans() {
					for _, sp := range ss.GetSpans() {
						c.add(sp.GetName())
					}
				}
			}
			w.Header().Set("Content-Type", "application/x-protobuf")
			out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
			_, _ = w.Write(out)
		case "/api/v2/spans": // Zipkin JSON v2
			var spans []struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			}
			if err := json.Unmarshal(body, &spans); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for _, s := range spans {
				c.add(s.Name + "/" + s.Kind)
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return c, srv
}

// oneSpan makes an inbound span for a request with a sampled B3 parent and flushes it.
func oneSpan(t *testing.T, opts Options) *http.Request {
	t.Helper()
	opts.Node = &model.Proxy{ID: "catalog-v1-0.default", Workload: model.NamespacedName{Namespace: "default", Name: "catalog-v1"}, Labels: map[string]string{"app": "catalog"}}
	tr, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := httptestRequest()
	info := streaminfo.New("inbound|8080", streaminfo.Inbound, streaminfo.ProtocolHTTP)
	_, span := tr.Start(context.Background(), r, info)
	info.ResponseCode, info.Duration = 200, time.Millisecond
	tr.End(span, info)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if info.TraceID != "463ac35c9f6413ad48485a3953bb6124" {
		t.Errorf("trace id %q, want the B3 parent's", info.TraceID)
	}
	return r
}

func httptestRequest() *http.Request {
	r := httptest.NewRequest("GET", "http://catalog:8080/items", nil)
	r.Header.Set("B3", "463ac35c9f6413ad48485a3953bb6124-0020000000000001-1")
	return r
}

func TestExporters(t *testing.T) {
	t.Run("otlp-grpc", func(t *testing.T) {
		rcv := otlp.Start(t)
		oneSpan(t, Options{Exporter: ExporterOTLPGRPC, Endpoint: rcv.Addr, SamplingPercent: 0})
		if s := rcv.Spans(); len(s) != 1 || s[0].Name != "catalog:8080/*" || s[0].ParentSpanID != "0020000000000001" || s[0].Service != "catalog.default" {
			t.Errorf("spans %+v", s)
		}
	})
	t.Run("otlp-http", func(t *testing.T) {
		c, srv := startHTTPCollector(t)
		r := oneSpan(t, Options{Exporter: ExporterOTLPHTTP, Endpoint: strings.TrimPrefix(srv.URL, "http://"), SamplingPercent: 100})
		if got := c.got(); len(got) != 1 || got[0] != "catalog:8080/*" {
			t.Errorf("spans %v", got)
		}
		// The stale single b3 header is replaced by the new span's context.
		if r.Header.Get("B3") != "" || r.Header.Get("X-B3-Traceid") != "463ac35c9f6413ad48485a3953bb6124" || !strings.HasPrefix(r.Header.Get("Traceparent"), "00-463ac35c9f6413ad48485a3953bb6124-") {
			t.Errorf("injected headers %v", r.Header)
		}
	})
	t.Run("zipkin", func(t *testing.T) {
		c, srv := startHTTPCollector(t)
		oneSpan(t, Options{Exporter: ExporterZipkin, Endpoint: srv.URL + "/api/v2/spans", SamplingPercent: 100})
		if got := c.got(); len(got) != 1 || got[0] != "catalog:8080/*/SERVER" {
			t.Errorf("spans %v", got)
		}
	})
}

func TestSamplingWithoutParent(t *testing.T) {
	rcv := otlp.Start(t)
	tr, err := New(context.Background(), Options{Exporter: ExporterOTLPGRPC, Endpoint: rcv.Addr, SamplingPercent: 0})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r := httptest.NewRequest("GET", "http://catalog:8080/", nil)
		info := streaminfo.New("outbound_http_proxy", streaminfo.Outbound, streaminfo.ProtocolHTTP)
		_, span := tr.Start(context.Background(), r, info)
		tr.End(span, info)
		if info.Sampled || !strings.HasSuffix(r.Header.Get("Traceparent"), "-00") {
			t.Fatalf("0%% sampling sampled a new trace: %v", r.Header)
		}
	}
	_ = tr.Shutdown(context.Background())
	if n := len(rcv.Spans()); n != 0 {
		t.Errorf("%d spans exported at 0%% sampling", n)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{{Exporter: "jaeger", Endpoint: "x"}, {Exporter: ExporterZipkin}, {Exporter: ExporterOTLPGRPC, Endpoint: "x", SamplingPercent: 101}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
