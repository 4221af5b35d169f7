// Package dns is the proxy's DNS server: Envoy's DNS filter (envoy.filters.udp.
// dns_filter) semantics over UDP, and the same answers over TCP. Names in the table
// (mesh services and their VIPs, sent by the control plane in the listener) are
// answered locally; other names are forwarded to upstream resolvers when the filter
// has a client_config, else answered NXDOMAIN. Envoy resolves forwarded names itself
// (A/AAAA only); skein forwards the query as is, so every record type works.
//
// The same server, with an authoritative suffix and no table, is the node-level
// resolver `skein up` runs for its pods (the role kube-dns plays in a cluster).
package dns

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"skein.dev/skein/internal/proxy/resource"
)

// Table is a compiled DNS configuration. It is immutable.
type Table struct {
	names map[string]entry
	// Forward sends names not in the table upstream; otherwise they get NXDOMAIN.
	Forward bool
	// Resolvers are the upstreams (host:port); empty means /etc/resolv.conf's.
	Resolvers []string
	Timeout   time.Duration
	// Authoritative suffixes: a name under one that is not in the table is answered
	// NXDOMAIN here instead of being forwarded.
	Authoritative []string
}

type entry struct {
	v4, v6 []netip.Addr
	ttl    uint32
}

// Compile builds a Table from a decoded DNS filter.
func Compile(f *resource.DNSFilter) *Table {
	t := &Table{names: map[string]entry{}, Forward: f.Forward, Resolvers: f.Resolvers, Timeout: f.ResolverTimeout}
	for _, n := range f.Table {
		e := entry{ttl: uint32(n.TTL / time.Second)}
		for _, a := range n.Addresses {
			if a.Is4() || a.Is4In6() {
				e.v4 = append(e.v4, a.Unmap())
			} else {
				e.v6 = append(e.v6, a)
			}
		}
		t.names[n.Name] = e
	}
	return t
}

// Lookup returns the table's addresses for a name (tests and tools).
func (t *Table) Lookup(name string) []netip.Addr {
	e, ok := t.names[canonical(name)]
	if !ok {
		return nil
	}
	return append(append([]netip.Addr(nil), e.v4...), e.v6...)
}

func canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// Result says how a query was answered, for metrics.
type Result string

const (
	ResultLocal     Result = "local"     // from the table
	ResultNXDomain  Result = "nxdomain"  // not in the table, not forwarded
	ResultForwarded Result = "forwarded" // answered by an upstream
	ResultError     Result = "error"     // malformed, or every upstream failed
)

// Handler serves queries with the table current at each query.
type Handler struct {
	// Table returns the current table; nil refuses every query.
	Table func() *Table
	// Observe, optional, learns each query's result.
	Observe func(Result)
	Logger  *slog.Logger

	once       sync.Once
	systemErr  error
	systemAddr []string
}

var _ mdns.Handler = (*Handler)(nil)

// ServeDNS implements miekg/dns.Handler.
func (h *Handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp, res := h.answer(context.Background(), req, w.RemoteAddr())
	if h.Observe != nil {
		h.Observe(res)
	}
	if resp != nil {
		_ = w.WriteMsg(resp)
	}
}

// answer builds the response to one query.
func (h *Handler) answer(ctx context.Context, req *mdns.Msg, from net.Addr) (*mdns.Msg, Result) {
	resp := new(mdns.Msg)
	if req.Opcode != mdns.OpcodeQuery || len(req.Question) != 1 {
		resp.SetRcode(req, mdns.RcodeFormatError)
		return resp, ResultError
	}
	t := h.table()
	if t == nil {
		resp.SetRcode(req, mdns.RcodeRefused)
		return resp, ResultError
	}
	q := req.Question[0]
	name := canonical(q.Name)
	if e, ok := t.names[name]; ok && q.Qclass == mdns.ClassINET {
		resp.SetReply(req)
		resp.Authoritative = true
		if q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY {
			for _, a := range shuffled(e.v4) {
				resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA, e.ttl), A: a.AsSlice()})
			}
		}
		if q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY {
			for _, a := range shuffled(e.v6) {
				resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA, e.ttl), AAAA: a.AsSlice()})
			}
		}
		// Other types (and A for a v6-only name): the name exists with no such data.
		return resp, ResultLocal
	}
	for _, s := range t.Authoritative {
		if name == s || strings.HasSuffix(name, "."+s) {
			resp.SetRcode(req, mdns.RcodeNameError)
			resp.Authoritative = true
			return resp, ResultNXDomain
		}
	}
	if !t.Forward {
		resp.SetRcode(req, mdns.RcodeNameError)
		return resp, ResultNXDomain
	}
	up, err := h.forward(ctx, t, req, from)
	if err != nil {
		if h.Logger != nil {
			h.Logger.Debug("dns: forwarding failed", "name", q.Name, "error", err)
		}
		resp.SetRcode(req, mdns.RcodeServerFailure)
		return resp, ResultError
	}
	up.Id = req.Id
	return up, ResultForwarded
}

func hdr(name string, typ uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
}

// shuffled returns the addresses in random order, as Envoy varies them per query.
func shuffled(a []netip.Addr) []netip.Addr {
	if len(a) < 2 {
		return a
	}
	out := append([]netip.Addr(nil), a...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func (h *Handler) table() *Table {
	if h.Table == nil {
		return nil
	}
	return h.Table()
}

// forward asks each upstream in turn (over the transport the query came on, TCP
// again when a UDP answer is truncated).
func (h *Handler) forward(ctx context.Context, t *Table, req *mdns.Msg, from net.Addr) (*mdns.Msg, error) {
	upstreams := t.Resolvers
	if len(upstreams) == 0 {
		var err error
		if upstreams, err = h.system(); err != nil {
			return nil, err
		}
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	network := "udp"
	if _, ok := from.(*net.TCPAddr); ok {
		network = "tcp"
	}
	var lastErr error
	for _, up := range upstreams {
		c := &mdns.Client{Net: network, Timeout: timeout}
		resp, _, err := c.ExchangeContext(ctx, req, up)
		if err == nil && resp.Truncated && network == "udp" {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, req, up)
		}
		if err == nil {
			return resp, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// system reads /etc/resolv.conf's nameservers once (in a pod, the pod's file).
func (h *Handler) system() ([]string, error) {
	h.once.Do(func() {
		cfg, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			h.systemErr = err
			return
		}
		for _, s := range cfg.Servers {
			h.systemAddr = append(h.systemAddr, net.JoinHostPort(s, cfg.Port))
		}
	})
	return h.systemAddr, h.systemErr
}

// Server serves a Handler on a UDP socket and a TCP listener (either may be nil).
type Server struct {
	udp, tcp *mdns.Server
}

// Serve starts serving and returns once both servers run; Shutdown stops them.
func Serve(pc net.PacketConn, ln net.Listener, h mdns.Handler, log *slog.Logger) *Server {
	s := &Server{}
	start := func(srv *mdns.Server, kind string) {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil && log != nil {
				log.Debug("dns server stopped", "transport", kind, "error", err)
			}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
		}
	}
	if pc != nil {
		s.udp = &mdns.Server{PacketConn: pc, Handler: h}
		start(s.udp, "udp")
	}
	if ln != nil {
		s.tcp = &mdns.Server{Listener: ln, Handler: h, ReadTimeout: 10 * time.Second}
		start(s.tcp, "tcp")
	}
	return s
}

// Shutdown stops both servers.
func (s *Server) Shutdown() {
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.ShutdownContext(ctx)
			cancel()
		}
	}
}
