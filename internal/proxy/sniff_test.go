package proxy_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dnstablev3 "github.com/envoyproxy/go-control-plane/envoy/data/dns/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	dnsfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/dns_filter/v3"
	mdns "github.com/miekg/dns"
	"google.golang.org/protobuf/types/known/durationpb"
)

// greeter is a server-first TCP server: it says hello before the client says anything,
// then echoes one line.
func greeter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("220 greeter ready\r\n"))
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("echo " + line))
			}()
		}
	}()
	return ln.Addr().String()
}

// TestProtocolSniffing: one listener whose chains are chosen by the inspectors: HTTP
// (http/1.1, h2c) to an HTTP backend, anything else (a server-first protocol here) to a
// TCP backend after the detection timeout.
func TestProtocolSniffing(t *testing.T) {
	m := newMesh(t)
	greet := greeter(t)
	addr := freeAddr(t)
	const timeout = 150 * time.Millisecond
	sniff := httpListener(t, "sniff", addr, "sniff-routes")
	httpChain := sniff.FilterChains[0]
	httpChain.Name = "http"
	httpChain.FilterChainMatch = &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.1", "http/1.0", "h2c"}}
	tcpChain := tcpListener(t, "x", addr, "greeter").FilterChains[0]
	tcpChain.Name = "tcp"
	sniff.DefaultFilterChain = tcpChain
	sniff.ListenerFilters = []*listenerv3.ListenerFilter{
		{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})}},
		{Name: "envoy.filters.listener.http_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &httpinspectorv3.HttpInspector{})}},
	}
	sniff.ListenerFiltersTimeout = durationpb.New(timeout)
	sniff.ContinueOnListenerFiltersTimeout = true
	greeterCluster := &clusterv3.Cluster{
		Name:                 "greeter",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       endpoints("greeter", greet),
		ConnectTimeout:       durationpb.New(time.Second),
	}
	dnsAddr := freeAddr(t)
	host, port, _ := net.SplitHostPort(dnsAddr)
	dnsListener := &listenerv3.Listener{
		Name: "dns",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol: corev3.SocketAddress_UDP, Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(atoi(port))},
		}}},
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.udp.dns_filter", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &dnsfilterv3.DnsFilterConfig{
			StatPrefix: "dns",
			ServerConfig: &dnsfilterv3.DnsFilterConfig_ServerContextConfig{ConfigSource: &dnsfilterv3.DnsFilterConfig_ServerContextConfig_InlineDnsTable{InlineDnsTable: &dnstablev3.DnsTable{
				VirtualDomains: []*dnstablev3.DnsTable_DnsVirtualDomain{{Name: "catalog.default.svc.cluster.local", Endpoint: &dnstablev3.DnsTable_DnsEndpoint{
					EndpointConfig: &dnstablev3.DnsTable_DnsEndpoint_AddressList{AddressList: &dnstablev3.DnsTable_AddressList{Address: []string{"240.240.1.2"}}},
				}}},
			}}},
		})}}},
	}
	rc := &routev3.RouteConfiguration{Name: "sniff-routes", VirtualHosts: []*routev3.VirtualHost{{
		Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: toCluster("a")}},
	}}}
	m.cp.set(t, m.snapshot(t, 100, func(s *snapshot) {
		s.listeners = append(s.listeners, sniff, dnsListener)
		s.routes = append(s.routes, rc)
		s.clusters = append(s.clusters, greeterCluster)
	}))
	m.px.waitVersion(t, m.cp)
	if nacks := m.cp.nackMessages(); len(nacks) > 0 {
		t.Fatalf("NACKed: %v", nacks)
	}
	// Listeners are bound just after the config is acknowledged.
	waitFor(t, "listeners bound", func() bool {
		for _, a := range []string{addr, dnsAddr} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})

	t.Run("HTTP is detected and routed", func(t *testing.T) {
		code, reply := request(t, http.DefaultClient, "GET", fmtURL(addr, "/x"), "anything", nil)
		if code != 200 || reply.Backend != "a" {
			t.Fatalf("got %d from %q, want 200 from a", code, reply.Backend)
		}
	})
	t.Run("a server-first protocol gets its greeting after the detection timeout", func(t *testing.T) {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		waited := time.Since(start)
		if err != nil || greeting != "220 greeter ready\r\n" {
			t.Fatalf("greeting %q, %v", greeting, err)
		}
		t.Logf("greeting after %v (detection timeout %v)", waited.Round(time.Millisecond), timeout)
		if waited < timeout {
			t.Errorf("greeting after %v, before the detection timeout %v: was detection skipped?", waited, timeout)
		}
		c.Write([]byte("hello\n"))
		if line, _ := r.ReadString('\n'); line != "echo hello\n" {
			t.Errorf("echo %q", line)
		}
	})
	t.Run("a client-first non-HTTP protocol goes straight to TCP", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("\x00binary\n"))
		r := bufio.NewReader(c)
		greeting, _ := r.ReadString('\n')
		echo, _ := r.ReadString('\n')
		if greeting != "220 greeter ready\r\n" || !strings.HasPrefix(echo, "echo \x00binary") {
			t.Fatalf("got %q %q", greeting, echo)
		}
	})
	t.Run("DNS listener answers from its table over UDP and TCP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			q := new(mdns.Msg)
			q.SetQuestion("catalog.default.svc.cluster.local.", mdns.TypeA)
			resp, _, err := (&mdns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(q, dnsAddr)
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			if len(resp.Answer) != 1 || resp.Answer[0].(*mdns.A).A.String() != "240.240.1.2" {
				t.Errorf("%s: answer %v", network, resp.Answer)
			}
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
