package forward

import "skein.dev/skein/internal/proxy/dns"

// DNSHandler answers queries on the named UDP (DNS filter) listener with its table in
// the current config.
func (f *Forwarder) DNSHandler(listener string) *dns.Handler {
	return &dns.Handler{
		Table: func() *dns.Table {
			cfg := f.cfg.Load()
			if cfg == nil || cfg.Listeners[listener] == nil {
				return nil
			}
			return cfg.Listeners[listener].DNS
		},
		Observe: func(r dns.Result) { f.metrics.DNSQuery(string(r)) },
		Logger:  f.log,
	}
}
