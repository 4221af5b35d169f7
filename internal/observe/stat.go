// Package observe computes the live views of a running mesh from its sidecars, as
// `linkerd viz stat/top/tap` do: golden signals from two scrapes of every sidecar's
// Prometheus endpoint (the difference over the window), hottest paths and live
// requests from the sidecars' tap streams. The CLI (skein stat/top/tap) and the
// dashboard share this code, so they show the same numbers.
package observe

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"skein.dev/skein/internal/api"
)

// Target is one sidecar to read.
type Target struct {
	Proxy     string
	Workload  string
	Namespace string
	// Metrics is host:port serving /stats/prometheus; Admin serves /tap and /explain.
	Metrics, Admin string
	// Inbound are the sidecar's inbound addresses (what callers' endpoints name);
	// IP is the pod address (isolation netns), where endpoints are ip:containerPort.
	Inbound []string
	IP      string
	// Principal is the SPIFFE ID of the sidecar's certificate (empty without mTLS).
	Principal string
}

// Targets lists the sidecars of a status.
func Targets(st api.Status) []Target {
	var out []Target
	ids := map[string]string{}
	for _, p := range st.Proxies {
		ids[p.ID] = p.SPIFFEID
	}
	for _, w := range st.Workloads {
		for _, r := range w.Replicas {
			m := r.Metrics
			if m == "" {
				m = r.Admin
			}
			t := Target{Proxy: r.ProxyID, Workload: w.Name, Namespace: w.Namespace, Metrics: m, Admin: r.Admin, IP: r.IP, Principal: ids[r.ProxyID]}
			for _, a := range r.InboundPorts {
				t.Inbound = append(t.Inbound, a)
			}
			if r.Inbound != "" && len(t.Inbound) == 0 {
				t.Inbound = append(t.Inbound, r.Inbound)
			}
			sort.Strings(t.Inbound)
			out = append(out, t)
		}
	}
	return out
}

// series is one istio_requests_total / duration series, keyed by its labels.
type series struct {
	labels   map[string]string
	requests float64
	buckets  []bucket // cumulative, by upper bound
}

type bucket struct {
	le    float64
	count float64
}

// Snapshot is one scrape of every target.
type Snapshot struct {
	At        time.Time
	series    map[string]*series // proxy + label signature -> series
	workloads map[[2]string]bool // every scraped workload, even one without traffic
	Errors    []string
}

// Scrape reads every target's metrics once, concurrently.
func Scrape(ctx context.Context, client *http.Client, targets []Target) *Snapshot {
	snap := &Snapshot{At: time.Now(), series: map[string]*series{}, workloads: map[[2]string]bool{}}
	for _, t := range targets {
		snap.workloads[[2]string{t.Workload, t.Namespace}] = true
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() {
			fams, err := scrapeOne(ctx, client, t.Metrics)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", t.Proxy, err))
				return
			}
			addFamilies(snap.series, t.Proxy, fams)
		})
	}
	wg.Wait()
	sort.Strings(snap.Errors)
	return snap
}

func scrapeOne(ctx context.Context, client *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats/prometheus", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

func addFamilies(out map[string]*series, proxy string, fams map[string]*dto.MetricFamily) {
	get := func(m *dto.Metric) (string, map[string]string) {
		labels := map[string]string{}
		key := proxy
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
			key += "\x00" + lp.GetName() + "=" + lp.GetValue()
		}
		return key, labels
	}
	for _, m := range fams["istio_requests_total"].GetMetric() {
		key, labels := get(m)
		s := out[key]
		if s == nil {
			s = &series{labels: labels}
			out[key] = s
		}
		s.requests = m.GetCounter().GetValue()
	}
	for _, m := range fams["istio_request_duration_milliseconds"].GetMetric() {
		key, labels := get(m)
		s := out[key]
		if s == nil {
			s = &series{labels: labels}
			out[key] = s
		}
		for _, b := range m.GetHistogram().GetBucket() {
			s.buckets = append(s.buckets, bucket{le: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
		}
		if n := len(s.buckets); n == 0 || !math.IsInf(s.buckets[n-1].le, 1) {
			s.buckets = append(s.buckets, bucket{le: math.Inf(1), count: float64(m.GetHistogram().GetSampleCount())})
		}
	}
}

// Stats are the golden signals of one group of requests over a window.
type Stats struct {
	Requests    float64 `json:"requests"`
	RPS         float64 `json:"rps"`
	SuccessRate float64 `json:"successRate"` // 0..1; NaN-free: 0 when no request
	P50         float64 `json:"p50Ms"`
	P95         float64 `json:"p95Ms"`
	P99         float64 `json:"p99Ms"`
	// MTLS is the share of requests that arrived over mutual TLS (destination view).
	MTLS float64 `json:"mtlsShare"`
}

// Row is the stats of a workload or a service.
type Row struct {
	Kind      string `json:"kind"` // workload or service
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Stats
}

// Edge is the traffic from one workload to a workload or service.
type Edge struct {
	Source              string `json:"source"` // workload.namespace, or "unknown"
	Destination         string `json:"destination"`
	DestinationService  string `json:"destinationService"`
	DestinationWorkload bool   `json:"destinationIsWorkload"`
	Stats
}

// Result is the difference of two snapshots.
type Result struct {
	Window    float64  `json:"windowSeconds"`
	Workloads []Row    `json:"workloads"`
	Services  []Row    `json:"services"`
	Edges     []Edge   `json:"edges"`
	Errors    []string `json:"errors,omitempty"`
}

type acc struct {
	requests, success, mtls float64
	buckets                 map[float64]float64
}

func (a *acc) add(delta float64, code string, mtls bool) {
	a.requests += delta
	if c, err := strconv.Atoi(code); err == nil && c >= 100 && c < 500 {
		a.success += delta
	}
	if mtls {
		a.mtls += delta
	}
}

func (a *acc) addBuckets(before, after *series) {
	if a.buckets == nil {
		a.buckets = map[float64]float64{}
	}
	prev := map[float64]float64{}
	if before != nil {
		for _, b := range before.buckets {
			prev[b.le] = b.count
		}
	}
	for _, b := range after.buckets {
		if d := b.count - prev[b.le]; d > 0 {
			a.buckets[b.le] += d
		}
	}
}

func (a *acc) stats(window float64) Stats {
	s := Stats{Requests: a.requests}
	if window > 0 {
		s.RPS = a.requests / window
	}
	if a.requests > 0 {
		s.SuccessRate = a.success / a.requests
		s.MTLS = a.mtls / a.requests
	}
	s.P50, s.P95, s.P99 = quantile(0.5, a.buckets), quantile(0.95, a.buckets), quantile(0.99, a.buckets)
	return s
}

// quantile is Prometheus' histogram_quantile: linear interpolation in the bucket that
// holds the rank; the +Inf bucket answers with the largest finite bound.
func quantile(q float64, cum map[float64]float64) float64 {
	if len(cum) == 0 {
		return 0
	}
	les := make([]float64, 0, len(cum))
	for le := range cum {
		les = append(les, le)
	}
	sort.Float64s(les)
	total := cum[les[len(les)-1]]
	if total == 0 {
		return 0
	}
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		c := cum[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevLe
			}
			if c == prevCount {
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(c-prevCount)
		}
		prevLe, prevCount = le, c
	}
	return prevLe
}

// Diff computes the golden signals between two snapshots of the same targets. Workload
// and service rows, and edges between workloads, come from the destination sidecars'
// reports (reporter="destination"), as Linkerd's inbound view; requests that never
// reached a destination (no route, no healthy upstream, connect failure) exist only in
// the source's report and are added to the service row and an edge to the service.
func Diff(before, after *Snapshot) Result {
	window := after.At.Sub(before.At).Seconds()
	workloads, services, edges := map[[2]string]*acc{}, map[[2]string]*acc{}, map[[3]string]*acc{}
	get := func(m map[[2]string]*acc, k [2]string) *acc {
		if m[k] == nil {
			m[k] = &acc{}
		}
		return m[k]
	}
	for key, s := range after.series {
		var prev *series
		var prevReq float64
		if before != nil {
			prev = before.series[key]
			if prev != nil {
				prevReq = prev.requests
			}
		}
		delta := s.requests - prevReq
		if delta < 0 { // counter reset (sidecar restarted)
			delta, prev = s.requests, nil
		}
		l := s.labels
		code, mtls := l["response_code"], l["connection_security_policy"] == "mutual_tls"
		src := l["source_workload"] + "." + l["source_workload_namespace"]
		if l["source_workload"] == "unknown" || l["source_workload"] == "" {
			src = "unknown"
		}
		svc := l["destination_service"]
		var dst string
		switch {
		case l["reporter"] == "destination":
			dst = l["destination_workload"] + "." + l["destination_workload_namespace"]
			for _, a := range []*acc{get(workloads, [2]string{l["destination_workload"], l["destination_workload_namespace"]}),
				get(services, [2]string{svc, l["destination_service_namespace"]})} {
				a.add(delta, code, mtls)
				a.addBuckets(prev, s)
			}
		case l["destination_workload"] == "unknown" || l["destination_workload"] == "":
			// Never reached a destination sidecar: only the source knows.
			dst = "svc:" + svc
			a := get(services, [2]string{svc, l["destination_service_namespace"]})
			a.add(delta, code, mtls)
			a.addBuckets(prev, s)
		default:
			continue // the destination reported it too
		}
		if src == "unknown" && l["reporter"] != "destination" {
			continue
		}
		ek := [3]string{src, dst, svc}
		if edges[ek] == nil {
			edges[ek] = &acc{}
		}
		edges[ek].add(delta, code, mtls)
		edges[ek].addBuckets(prev, s)
	}
	for k := range after.workloads {
		get(workloads, k)
	}
	res := Result{Window: window, Errors: append(append([]string(nil), before.Errors...), after.Errors...)}
	for k, a := range workloads {
		res.Workloads = append(res.Workloads, Row{Kind: "workload", Name: k[0], Namespace: k[1], Stats: a.stats(window)})
	}
	for k, a := range services {
		res.Services = append(res.Services, Row{Kind: "service", Name: k[0], Namespace: k[1], Stats: a.stats(window)})
	}
	for k, a := range edges {
		if a.requests == 0 {
			continue
		}
		e := Edge{Source: k[0], Destination: k[1], DestinationService: k[2], Stats: a.stats(window)}
		if len(e.Destination) > 4 && e.Destination[:4] == "svc:" {
			e.Destination = e.Destination[4:]
		} else {
			e.DestinationWorkload = true
		}
		res.Edges = append(res.Edges, e)
	}
	sort.Slice(res.Workloads, func(i, j int) bool {
		return res.Workloads[i].Namespace+res.Workloads[i].Name < res.Workloads[j].Namespace+res.Workloads[j].Name
	})
	sort.Slice(res.Services, func(i, j int) bool { return res.Services[i].Name < res.Services[j].Name })
	sort.Slice(res.Edges, func(i, j int) bool {
		a, b := res.Edges[i], res.Edges[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Destination < b.Destination
	})
	return res
}

// Stat scrapes every target, waits window, scrapes again and diffs.
func Stat(ctx context.Context, client *http.Client, targets []Target, window time.Duration) (Result, error) {
	before := Scrape(ctx, client, targets)
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(window):
	}
	after := Scrape(ctx, client, targets)
	return Diff(before, after), nil
}
