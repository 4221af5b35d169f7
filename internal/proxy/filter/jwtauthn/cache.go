package jwtauthn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSSize bounds a fetched key set.
const maxJWKSSize = 1 << 20

// Cache fetches remote key sets (remote_jwks.http_uri) and keeps them for their
// cache_duration. A key set is fetched when a request first needs it; from then on a
// background loop refreshes it before it expires, so requests do not wait; when a
// refresh fails the previous keys keep being used until the next attempt succeeds.
// The proxy fetches the URI itself: the http_uri's cluster is not consulted.
type Cache struct {
	ctx    context.Context // bounds fetches
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	wake    chan struct{}
}

type entry struct {
	uri       string
	keys      *jose.JSONWebKeySet
	err       error
	fetchedAt time.Time
	cacheFor  time.Duration
	timeout   time.Duration
	fetching  chan struct{} // closed when the running fetch ends; nil when idle
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	Client *http.Client // default: http.DefaultTransport without proxies from the environment
	Logger *slog.Logger
	Now    func() time.Time
}

// NewCache returns a cache whose refresh loop runs until ctx ends.
func NewCache(ctx context.Context, opts CacheOptions) *Cache {
	c := &Cache{ctx: ctx, client: opts.Client, log: opts.Logger, now: opts.Now, entries: map[string]*entry{}, wake: make(chan struct{}, 1)}
	if c.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the sidecar itself must not go through HTTP_PROXY
		c.client = &http.Client{Transport: t}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	go c.refreshLoop(ctx)
	return c
}

// Keys returns the key set of uri, fetching it (within timeout) if it was never
// fetched; cacheFor is how long a fetched set is fresh.
func (c *Cache) Keys(ctx context.Context, uri string, timeout, cacheFor time.Duration) (*jose.JSONWebKeySet, error) {
	c.mu.Lock()
	e := c.entries[uri]
	if e == nil {
		e = &entry{uri: uri, cacheFor: cacheFor, timeout: timeout}
		c.entries[uri] = e
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	if e.keys != nil {
		keys := e.keys
		c.mu.Unlock()
		return keys, nil
	}
	wait := c.startFetchLocked(e)
	c.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrJWKSFetch, ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.keys != nil {
		return e.keys, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrJWKSFetch, e.err)
}

// startFetchLocked starts a fetch unless one runs, and returns its done channel.
func (c *Cache) startFetchLocked(e *entry) chan struct{} {
	if e.fetching != nil {
		return e.fetching
	}
	done := make(chan struct{})
	e.fetching = done
	go func() {
		keys, err := c.fetch(e.uri, e.timeout)
		c.mu.Lock()
		if err == nil {
			e.keys, e.err, e.fetchedAt = keys, nil, c.now()
		} else {
			e.err = err
			c.log.Warn("jwks fetch failed", "uri", e.uri, "error", err)
		}
		e.fetching = nil
		c.mu.Unlock()
		close(done)
	}()
	return done
}

func (c *Cache) fetch(uri string, timeout time.Duration) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, errors.New("key set larger than 1 MiB")
	}
	return ParseJWKS(body)
}

// refreshLoop refetches every key set once it is older than its cache duration (after
// a failed fetch, it retries after a second).
func (c *Cache) refreshLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.wake:
		}
		now := c.now()
		c.mu.Lock()
		for _, e := range c.entries {
			if e.fetching == nil && (e.keys == nil || now.Sub(e.fetchedAt) >= e.cacheFor) {
				c.startFetchLocked(e)
			}
		}
		c.mu.Unlock()
	}
}
