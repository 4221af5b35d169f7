package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/streaminfo"
)

// TapFilter selects tapped requests (see internal/proxy/tap).
type TapFilter struct {
	Path, Method, Status, Authority, Direction string
}

func (f TapFilter) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"path": f.Path, "method": f.Method, "status": f.Status, "authority": f.Authority, "direction": f.Direction} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// Tap opens a tap on every target and sends each event to out until ctx ends. It
// returns once every tap has ended; taps that cannot be opened are reported in the
// returned error, the others keep running.
func Tap(ctx context.Context, client *http.Client, targets []Target, f TapFilter, out chan<- streaminfo.Record) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for _, t := range targets {
		wg.Go(func() {
			if err := tapOne(ctx, client, t, f, out); err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v", t.Proxy, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("tap: %v", errs)
	}
	return nil
}

func tapOne(ctx context.Context, client *http.Client, t Target, f TapFilter, out chan<- streaminfo.Record) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Admin+"/tap?"+f.query(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec streaminfo.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("bad tap line: %w", err)
		}
		select {
		case out <- rec:
		case <-ctx.Done():
			return nil
		}
	}
	return sc.Err()
}

// TopRow is one (source, destination, method, path) seen by top.
type TopRow struct {
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Count       int     `json:"count"`
	Success     int     `json:"success"`
	Best        float64 `json:"bestMs"`
	Worst       float64 `json:"worstMs"`
	Last        float64 `json:"lastMs"`
}

// Top aggregates tapped requests by path, as `linkerd viz top`: only requests as their
// destination sidecar saw them (direction inbound) are counted, so none counts twice.
type Top struct {
	mu   sync.Mutex
	rows map[[4]string]*TopRow
}

// NewTop returns an empty Top.
func NewTop() *Top { return &Top{rows: map[[4]string]*TopRow{}} }

// Add counts one tapped request.
func (t *Top) Add(r streaminfo.Record) {
	if r.Direction != "inbound" || r.Method == "" {
		return
	}
	src := r.SourceWorkload
	if src == "" {
		src = "unknown"
	}
	dst := r.DestinationWorkload
	path := r.Path
	if u, err := url.ParseRequestURI(path); err == nil {
		path = u.Path
	}
	k := [4]string{src, dst, r.Method, path}
	t.mu.Lock()
	defer t.mu.Unlock()
	row := t.rows[k]
	if row == nil {
		row = &TopRow{Source: src, Destination: dst, Method: r.Method, Path: path, Best: r.Duration, Worst: r.Duration}
		t.rows[k] = row
	}
	row.Count++
	if r.ResponseCode >= 100 && r.ResponseCode < 500 {
		row.Success++
	}
	row.Best, row.Worst, row.Last = min(row.Best, r.Duration), max(row.Worst, r.Duration), r.Duration
}

// Rows returns the rows, most requests first.
func (t *Top) Rows() []TopRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TopRow, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// Since is a helper for callers that print ages of tapped requests.
func Since(r streaminfo.Record) time.Duration {
	t, err := streaminfo.ParseStart(r.StartTime)
	if err != nil {
		return 0
	}
	return time.Since(t)
}
