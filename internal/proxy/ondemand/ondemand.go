// Package ondemand lets a proxy whose config is scoped (an Istio Sidecar with
// scope.skein.dev/infer-from-traffic) reach a mesh service its config does not have
// yet: a request for an unknown Host asks the control plane (internal/xds/scopeapi),
// which adds the service to the workload's scope and pushes it, and the request is
// held until a config that routes it is applied, or the hold ends (then it gets the
// usual "no route" answer). It also reports, periodically, the services the proxy
// sent requests to, so the control plane keeps them in scope while they are used.
package ondemand

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"skein.dev/skein/internal/xds/scopeapi"
)

// DefaultHold is how long a request for an unknown host waits for its config.
const DefaultHold = 3 * time.Second

// deniedFor is how long a host the control plane did not add is answered at once.
const deniedFor = 10 * time.Second

// Options configure a Client.
type Options struct {
	Conn    grpc.ClientConnInterface // to the control plane (the xDS address)
	ProxyID string
	Logger  *slog.Logger
	Hold    time.Duration // DefaultHold when zero
}

// Client is one proxy's link to the scope service. Safe for concurrent use.
type Client struct {
	opts   Options
	active atomic.Bool // the control plane infers this proxy's scope from traffic

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) when a config is applied
	inflight map[string]*call
	denied   map[string]time.Time
	// inactiveUntil: the control plane said this proxy's scope is not inferred; no
	// host is asked about until then.
	inactiveUntil time.Time
}

// maxDenied bounds the negative cache (hosts come from requests).
const maxDenied = 1024

type call struct {
	done chan struct{}
	ok   bool
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hold <= 0 {
		opts.Hold = DefaultHold
	}
	return &Client{opts: opts, changed: make(chan struct{}), inflight: map[string]*call{}, denied: map[string]time.Time{}}
}

// ConfigApplied wakes the requests waiting for a new config.
func (c *Client) ConfigApplied() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Await asks for host and waits until found reports that the applied config routes it
// (found is called on the caller's goroutine), the hold ends or ctx does. Concurrent
// requests for one host share one call to the control plane.
func (c *Client) Await(ctx context.Context, host string, found func() bool) bool {
	host = strings.ToLower(host)
	deadline := time.Now().Add(c.opts.Hold)
	c.mu.Lock()
	if until, ok := c.denied[host]; (ok && time.Now().Before(until)) || time.Now().Before(c.inactiveUntil) {
		c.mu.Unlock()
		return false
	}
	changed := c.changed // a config applied from now on counts
	cl := c.inflight[host]
	leader := cl == nil
	if leader {
		cl = &call{done: make(chan struct{})}
		c.inflight[host] = cl
	}
	c.mu.Unlock()

	if leader {
		cl.ok = c.ask(ctx, host, deadline)
		c.mu.Lock()
		delete(c.inflight, host)
		if !cl.ok {
			c.deny(host)
		}
		c.mu.Unlock()
		close(cl.done)
	} else {
		select {
		case <-cl.done:
		case <-ctx.Done():
			return false
		}
	}
	if !cl.ok {
		return false
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if found() {
			return true
		}
		select {
		case <-changed:
			c.mu.Lock()
			changed = c.changed
			c.mu.Unlock()
		case <-timer.C:
			return found()
		case <-ctx.Done():
			return false
		}
	}
}

// deny remembers a host the control plane did not add. Callers hold mu.
func (c *Client) deny(host string) {
	now := time.Now()
	if len(c.denied) >= maxDenied {
		for h, until := range c.denied {
			if now.After(until) {
				delete(c.denied, h)
			}
		}
		if len(c.denied) >= maxDenied {
			clear(c.denied)
		}
	}
	c.denied[host] = now.Add(deniedFor)
}

// ask tells the control plane the proxy needs host; true when it is now in scope.
func (c *Client) ask(ctx context.Context, host string, deadline time.Time) bool {
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	active, inScope, err := scopeapi.Observe(ctx, c.opts.Conn, c.opts.ProxyID, []string{host})
	if err != nil {
		c.opts.Logger.Warn("asking the control plane for an unknown host", "host", host, "error", err)
		return false
	}
	c.active.Store(active)
	if !active {
		c.mu.Lock()
		c.inactiveUntil = time.Now().Add(deniedFor)
		c.mu.Unlock()
	}
	if len(inScope) == 0 {
		c.opts.Logger.Debug("unknown host is not a mesh service in scope", "host", host, "active", active)
		return false
	}
	c.opts.Logger.Info("host added to the proxy's scope on demand", "host", host, "service", inScope[0])
	return true
}

// Report runs until ctx ends: every interval, while the control plane infers this
// proxy's scope from traffic, it sends the hosts used (gather's answer) since the last
// report, keeping them in scope.
func (c *Client) Report(ctx context.Context, interval time.Duration, gather func() []string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hosts := gather()
		if !c.active.Load() || len(hosts) == 0 {
			continue
		}
		if len(hosts) > scopeapi.MaxHosts {
			hosts = hosts[:scopeapi.MaxHosts]
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		active, _, err := scopeapi.Observe(rctx, c.opts.Conn, c.opts.ProxyID, hosts)
		cancel()
		if err != nil {
			c.opts.Logger.Debug("reporting used hosts", "error", err)
			continue
		}
		c.active.Store(active)
	}
}
