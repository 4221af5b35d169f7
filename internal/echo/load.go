package echo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// LoadOptions configures RunLoad.
type LoadOptions struct {
	URL string
	// RPS is the request rate; requests are sent one at a time, so a slow answer
	// lowers the achieved rate rather than piling up. Zero means 5.
	RPS float64
	// Count stops after that many requests; zero means until ctx is cancelled.
	Count int
	// Header is added to every request.
	Header http.Header
	// Client sends the requests; nil means one that honours HTTP_PROXY.
	Client *http.Client
	// Timeout bounds each request; zero means 5 s.
	Timeout time.Duration
	// ReportEvery is how often a summary is logged; zero means 10 s.
	ReportEvery time.Duration
	Logger      *slog.Logger
}

// LoadStats counts what RunLoad saw.
type LoadStats struct {
	Requests int
	// ByStatus counts answers by HTTP status; transport errors count under 0.
	ByStatus map[int]int
	Total    time.Duration // summed latency, for the mean
	Max      time.Duration
}

// Errors counts transport errors and 5xx answers.
func (s LoadStats) Errors() int {
	n := 0
	for code, c := range s.ByStatus {
		if code == 0 || code >= 500 {
			n += c
		}
	}
	return n
}

func (s LoadStats) String() string {
	mean := time.Duration(0)
	if s.Requests > 0 {
		mean = s.Total / time.Duration(s.Requests)
	}
	var codes []string
	for _, code := range slices.Sorted(maps.Keys(s.ByStatus)) {
		codes = append(codes, fmt.Sprintf("%d:%d", code, s.ByStatus[code]))
	}
	return fmt.Sprintf("requests=%d errors=%d mean=%s max=%s status=[%s]",
		s.Requests, s.Errors(), mean.Round(time.Microsecond), s.Max.Round(time.Microsecond),
		strings.Join(codes, " "))
}

// RunLoad sends GET requests to opts.URL at a steady rate until ctx is cancelled or
// Count requests were sent, logging a summary of the last period every ReportEvery.
// It returns the totals; a cancelled ctx is a normal end, not an error.
func RunLoad(ctx context.Context, opts LoadOptions) (LoadStats, error) {
	if opts.RPS == 0 {
		opts.RPS = 5
	}
	if opts.RPS < 0 {
		return LoadStats{}, fmt.Errorf("echo load: negative rate %v", opts.RPS)
	}
	if _, err := http.NewRequest(http.MethodGet, opts.URL, nil); err != nil {
		return LoadStats{}, fmt.Errorf("echo load: %w", err)
	}
	if opts.Client == nil {
		opts.Client = Options{}.withDefaults().CallClient
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.ReportEvery == 0 {
		opts.ReportEvery = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	total := LoadStats{ByStatus: map[int]int{}}
	period := LoadStats{ByStatus: map[int]int{}}
	tick := time.NewTicker(time.Duration(float64(time.Second) / opts.RPS))
	defer tick.Stop()
	report := time.NewTicker(opts.ReportEvery)
	defer report.Stop()
	for ctx.Err() == nil && (opts.Count == 0 || total.Requests < opts.Count) {
		code, d := loadOnce(ctx, opts)
		if ctx.Err() != nil {
			break // the request was cut short by the stop, not by the server
		}
		for _, s := range []*LoadStats{&total, &period} {
			s.Requests++
			s.ByStatus[code]++
			s.Total += d
			s.Max = max(s.Max, d)
		}
		select {
		case <-report.C:
			opts.Logger.Info("load", "url", opts.URL, "last", period.String())
			period = LoadStats{ByStatus: map[int]int{}}
		default:
		}
		if opts.Count != 0 && total.Requests >= opts.Count {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	opts.Logger.Info("load done", "url", opts.URL, "total", total.String())
	return total, nil
}

// loadOnce sends one request and returns its status (0 for a transport error).
func loadOnce(ctx context.Context, opts LoadOptions) (int, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return 0, 0
	}
	for k, v := range opts.Header {
		req.Header[k] = v
	}
	resp, err := opts.Client.Do(req)
	if err != nil {
		opts.Logger.Debug("load request", "err", err)
		return 0, time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}
