package forward

import (
	"context"
	"net/http"

	"skein.dev/skein/internal/proxy/route"
)

// UnknownHostFunc asks for a host the outbound config does not route and waits until
// found (which looks it up in the newest config) reports it routed; it returns whether
// it is (internal/proxy/ondemand).
type UnknownHostFunc func(ctx context.Context, host string, found func() bool) bool

// awaitHost holds an outbound request whose Host matched no virtual host while the
// control plane is asked for it (scope inferred from traffic); it returns the config,
// chain, virtual host and route of the newest config when it now routes the request,
// else the given config and chain and nils.
func (f *Forwarder) awaitHost(ctx context.Context, listener, chain string, old *Config, l *Chain, r *http.Request) (*Config, *Chain, *route.VirtualHost, *route.Route) {
	var (
		gotCfg   *Config
		gotChain *Chain
		vh       *route.VirtualHost
		rt       *route.Route
	)
	found := func() bool {
		cfg := f.cfg.Load()
		if cfg == nil || cfg.Listeners[listener] == nil {
			return false
		}
		c := cfg.Listeners[listener].Chain(chain)
		if c == nil || c.Routes == nil {
			return false
		}
		if v, t := c.Routes.Select(r, nil); v != nil {
			gotCfg, gotChain, vh, rt = cfg, c, v, t
			return true
		}
		return false
	}
	if r.Host == "" || !f.onUnknownHost(ctx, r.Host, found) || gotChain == nil {
		return old, l, nil, nil
	}
	return gotCfg, gotChain, vh, rt
}
