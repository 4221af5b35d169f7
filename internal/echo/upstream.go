package echo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
)

// maxUpstreamBody bounds how much of an upstream answer is read and echoed.
const maxUpstreamBody = 1 << 20

// tracingHeaders are always copied to upstream calls, so that a trace spans the hops
// (W3C trace context, Zipkin B3 single and multi header, Envoy's request id).
func tracingHeaders() []string {
	return []string{
		"x-request-id", "traceparent", "tracestate", "b3",
		"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	}
}

// caller makes the --call requests of one server.
type caller struct {
	client    *http.Client
	urls      []string
	propagate []string
	opts      Options
}

func newCaller(o Options) *caller {
	return &caller{
		client:    o.CallClient,
		urls:      o.Calls,
		propagate: append(tracingHeaders(), o.Propagate...),
		opts:      o,
	}
}

// call calls every URL in parallel and returns their results in the order given.
// get reads one incoming header (HTTP header or gRPC metadata).
func (c *caller) call(ctx context.Context, get func(name string) string) []Upstream {
	if len(c.urls) == 0 {
		return nil
	}
	out := make([]Upstream, len(c.urls))
	var wg sync.WaitGroup
	for i, u := range c.urls {
		wg.Go(func() { out[i] = c.callOne(ctx, u, get) })
	}
	wg.Wait()
	return out
}

func (c *caller) callOne(ctx context.Context, url string, get func(string) string) Upstream {
	res := Upstream{URL: url}
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, h := range c.propagate {
		if v := get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		res.Error = "reading body: " + err.Error()
		return res
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		res.Body = m
	} else {
		res.BodyText = string(body)
	}
	return res
}
