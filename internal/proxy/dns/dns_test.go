package dns

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"skein.dev/skein/internal/proxy/resource"
)

// serve runs h on 127.0.0.1 (UDP and TCP on the same port) and returns the address.
func serve(t *testing.T, h *Handler) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue // the port is taken for TCP; try another
		}
		s := Serve(pc, ln, h, nil)
		t.Cleanup(s.Shutdown)
		return pc.LocalAddr().String()
	}
	t.Fatal("no free port for UDP and TCP")
	return ""
}

func query(t *testing.T, addr, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return resp
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	sort.Strings(out)
	return out
}

func TestTableAndForwarding(t *testing.T) {
	// The upstream plays the node resolver: authoritative for cluster.local, knows
	// example.com.
	upstream := Compile(&resource.DNSFilter{Table: []resource.DNSName{{Name: "example.com", Addresses: []netip.Addr{netip.MustParseAddr("10.1.2.3")}, TTL: time.Minute}}})
	upstream.Authoritative = []string{"cluster.local"}
	upAddr := serve(t, &Handler{Table: func() *Table { return upstream }})

	sidecar := Compile(&resource.DNSFilter{
		Table: []resource.DNSName{
			{Name: "catalog.default.svc.cluster.local", Addresses: []netip.Addr{netip.MustParseAddr("240.240.1.2")}, TTL: 30 * time.Second},
			{Name: "dual", Addresses: []netip.Addr{netip.MustParseAddr("240.240.1.3"), netip.MustParseAddr("fd00::1")}, TTL: 30 * time.Second},
		},
		Forward:         true,
		Resolvers:       []string{upAddr},
		ResolverTimeout: 2 * time.Second,
	})
	var mu sync.Mutex
	var results []Result
	addr := serve(t, &Handler{Table: func() *Table { return sidecar }, Observe: func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, r)
	}})

	for _, network := range []string{"udp", "tcp"} {
		m := query(t, addr, network, "Catalog.Default.svc.cluster.local", mdns.TypeA)
		if got := answers(m); len(got) != 1 || got[0] != "240.240.1.2" || !m.Authoritative || m.Answer[0].Header().Ttl != 30 {
			t.Errorf("%s: A catalog = %v (aa %v), want 240.240.1.2 ttl 30", network, m.Answer, m.Authoritative)
		}
	}
	if m := query(t, addr, "udp", "catalog.default.svc.cluster.local", mdns.TypeAAAA); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("AAAA of a v4-only name must be NODATA, got %v %v", mdns.RcodeToString[m.Rcode], m.Answer)
	}
	if got := answers(query(t, addr, "udp", "dual", mdns.TypeAAAA)); len(got) != 1 || got[0] != "fd00::1" {
		t.Errorf("AAAA dual = %v", got)
	}
	if got := answers(query(t, addr, "udp", "example.com", mdns.TypeA)); len(got) != 1 || got[0] != "10.1.2.3" {
		t.Errorf("forwarded example.com = %v", got)
	}
	if m := query(t, addr, "udp", "nope.default.svc.cluster.local", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("unknown cluster name: rcode %s, want NXDOMAIN from the authoritative upstream", mdns.RcodeToString[m.Rcode])
	}
	// No client_config: unknown names are NXDOMAIN, nothing is forwarded.
	local := Compile(&resource.DNSFilter{})
	localAddr := serve(t, &Handler{Table: func() *Table { return local }})
	if m := query(t, localAddr, "udp", "example.com", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("without forwarding: rcode %s", mdns.RcodeToString[m.Rcode])
	}
	// A dead upstream gives SERVFAIL, not a hang.
	dead := Compile(&resource.DNSFilter{Forward: true, Resolvers: []string{"127.0.0.1:1"}, ResolverTimeout: time.Second})
	deadAddr := serve(t, &Handler{Table: func() *Table { return dead }})
	if m := query(t, deadAddr, "udp", "example.com", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("dead upstream: rcode %s", mdns.RcodeToString[m.Rcode])
	}
	want := []Result{ResultLocal, ResultLocal, ResultLocal, ResultLocal, ResultForwarded, ResultForwarded}
	mu.Lock()
	defer mu.Unlock()
	if len(results) != len(want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

// FuzzAnswer: any packet that unpacks as a DNS message gets an answer or none, never a
// panic, from a table-only handler (no forwarding, so the fuzzer sends no traffic).
func FuzzAnswer(f *testing.F) {
	m := new(mdns.Msg)
	m.SetQuestion("catalog.default.svc.cluster.local.", mdns.TypeA)
	b, _ := m.Pack()
	f.Add(b)
	m.SetQuestion("x.", mdns.TypeAAAA)
	b, _ = m.Pack()
	f.Add(b)
	table := Compile(&resource.DNSFilter{Table: []resource.DNSName{{Name: "catalog.default.svc.cluster.local", Addresses: []netip.Addr{netip.MustParseAddr("240.240.1.2")}, TTL: time.Minute}}})
	table.Authoritative = []string{"cluster.local"}
	h := &Handler{Table: func() *Table { return table }}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(mdns.Msg)
		if req.Unpack(b) != nil {
			return
		}
		resp, _ := h.answer(context.Background(), req, &net.UDPAddr{})
		if resp != nil {
			if _, err := resp.Pack(); err != nil {
				t.Fatalf("answer does not pack: %v", err)
			}
		}
	})
}
