// Package loadgen sends a fixed number of HTTP requests and summarises the answers by
// status and by the backend that served them (the `workload` field of a skein echo
// reply). `skein call` uses it; so do the end-to-end tests, through `skein exec`.
package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Options describe a run.
type Options struct {
	URL         string
	Method      string
	Headers     http.Header
	Requests    int
	Concurrency int
	// Interval spaces request starts (per worker); 0 sends back to back.
	Interval time.Duration
	Timeout  time.Duration
	// Client defaults to one honouring HTTP_PROXY from the environment.
	Client *http.Client
}

// Summary is the outcome of a run.
type Summary struct {
	Requests int `json:"requests"`
	// Errors counts requests that got no HTTP answer.
	Errors int `json:"errors"`
	// Status counts answers by status code.
	Status map[int]int `json:"status"`
	// Backends counts 2xx answers by the workload that served them ("" if unknown).
	Backends map[string]int `json:"backends"`
	// FirstErrors keeps a few error messages.
	FirstErrors []string      `json:"firstErrors,omitempty"`
	Duration    time.Duration `json:"durationNanos"`
}

// Failed counts requests that got no answer or a non-2xx status.
func (s Summary) Failed() int {
	n := s.Errors
	for code, c := range s.Status {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

func (s Summary) String() string {
	var b []byte
	b = fmt.Appendf(b, "%d requests in %s, %d failed", s.Requests, s.Duration.Round(time.Millisecond), s.Failed())
	codes := make([]int, 0, len(s.Status))
	for c := range s.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		b = fmt.Appendf(b, "\n  status %d: %d", c, s.Status[c])
	}
	names := make([]string, 0, len(s.Backends))
	for n := range s.Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		label := n
		if label == "" {
			label = "(unknown)"
		}
		b = fmt.Appendf(b, "\n  backend %s: %d (%.1f%%)", label, s.Backends[n], 100*float64(s.Backends[n])/float64(max(s.Requests, 1)))
	}
	for _, e := range s.FirstErrors {
		b = fmt.Appendf(b, "\n  error: %s", e)
	}
	return string(b)
}

// Run sends the requests and returns the summary.
func Run(ctx context.Context, o Options) Summary {
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: o.Timeout, Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: o.Concurrency,
		}}
	}
	s := Summary{Requests: o.Requests, Status: map[int]int{}, Backends: map[string]int{}}
	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				code, backend, err := one(ctx, client, o)
				mu.Lock()
				if err != nil {
					s.Errors++
					if len(s.FirstErrors) < 5 {
						s.FirstErrors = append(s.FirstErrors, err.Error())
					}
				} else {
					s.Status[code]++
					if code >= 200 && code < 300 {
						s.Backends[backend]++
					}
				}
				mu.Unlock()
				if o.Interval > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(o.Interval):
					}
				}
			}
		}()
	}
	for i := 0; i < o.Requests && ctx.Err() == nil; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	s.Duration = time.Since(start)
	return s
}

func one(ctx context.Context, client *http.Client, o Options) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, o.Method, o.URL, nil)
	if err != nil {
		return 0, "", err
	}
	for k, vs := range o.Headers {
		for _, v := range vs {
			if http.CanonicalHeaderKey(k) == "Host" {
				req.Host = v
				continue
			}
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	var echo struct {
		Workload string `json:"workload"`
	}
	_ = json.Unmarshal(body, &echo)
	return resp.StatusCode, echo.Workload, nil
}
