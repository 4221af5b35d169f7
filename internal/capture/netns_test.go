//go:build linux

package capture

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"skein.dev/skein/internal/netns"
	"skein.dev/skein/internal/testutil/netnstest"
)

func TestMain(m *testing.M) {
	if netnstest.Unavailable() == "" {
		netnstest.Sweep(netnstest.Prefix)
	}
	code := m.Run()
	if netnstest.Unavailable() == "" {
		netnstest.Sweep(netnstest.Prefix)
	}
	os.Exit(code)
}

// arrival is one connection a test listener accepted.
type arrival struct {
	listener string
	id       string
	origDst  netip.AddrPort
	redirect bool
	peer     string
}

// listenIn starts a TCP listener inside ns that reports every connection's first line.
func listenIn(t *testing.T, ns, name, addr string, got chan<- arrival) {
	t.Helper()
	ln, err := netns.Listen(ns, "tcp4", addr)
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
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
				c.SetDeadline(time.Now().Add(10 * time.Second))
				dst, redirected, err := OriginalDst(c.(*net.TCPConn))
				if err != nil {
					t.Errorf("OriginalDst: %v", err)
				}
				line, _ := bufio.NewReader(c).ReadString('\n')
				got <- arrival{listener: name, id: strings.TrimSpace(line), origDst: dst, redirect: redirected, peer: c.RemoteAddr().String()}
				fmt.Fprintln(c, "ok")
			}()
		}
	}()
}

// dialFrom connects from ns (as root, or as uid with a shell), sends id and waits.
func dialFrom(t *testing.T, ns string, uid int, src, dst string, id string) {
	t.Helper()
	if uid >= 0 {
		host, port, _ := net.SplitHostPort(dst)
		err := netns.Do(ns, func() error {
			cmd := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && echo %s >&3 && read -t 5 line <&3", host, port, id))
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("dial %s as uid %d: %v", dst, uid, err)
		}
		return
	}
	var conn net.Conn
	err := netns.Do(ns, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		var err error
		conn, err = d.Dial("tcp4", dst)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, ns, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(conn, id)
	bufio.NewReader(conn).ReadString('\n')
}

// TestCaptureInNamespace applies the default rules in a namespace ("pod") and sends
// real connections in and out of it: each must land where istio-init's rules would
// send it, with SO_ORIGINAL_DST telling where it was going.
func TestCaptureInNamespace(t *testing.T) {
	netnstest.Require(t)
	pod, peer, podIP, peerIP := netnstest.Pair(t)
	cfg := Defaults()
	cfg.ExcludeOutboundPorts = []int{9999}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Apply(ctx, InNetns(pod), cfg); err != nil {
		t.Fatal(err)
	}
	// Applying again replaces the rules instead of doubling them.
	if err := Apply(ctx, InNetns(pod), cfg); err != nil {
		t.Fatal(err)
	}
	saved, err := InNetns(pod)(ctx, "", "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(saved, "-A OUTPUT -p tcp -j SKEIN_OUTPUT"); n != 1 {
		t.Fatalf("jump to SKEIN_OUTPUT appears %d times after two Apply:\n%s", n, saved)
	}

	got := make(chan arrival, 16)
	listenIn(t, pod, "outbound", "0.0.0.0:15001", got)
	listenIn(t, pod, "inbound", "0.0.0.0:15006", got)
	listenIn(t, pod, "app", "0.0.0.0:8080", got)
	listenIn(t, pod, "admin", "0.0.0.0:15000", got)
	listenIn(t, peer, "peer-app", "0.0.0.0:8080", got)
	listenIn(t, peer, "peer-9999", "0.0.0.0:9999", got)
	dns, err := netns.ListenPacket(pod, "udp4", "127.0.0.1:15053")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()

	peerApp := netip.AddrPortFrom(netip.MustParseAddr(peerIP.String()), 8080)
	podApp := netip.AddrPortFrom(netip.MustParseAddr(podIP.String()), 8080)
	tests := []struct {
		name         string
		from         string
		uid          int
		src, dst     string
		wantListener string
		wantOrigDst  netip.AddrPort
	}{
		{"app outbound is captured", pod, -1, "", peerApp.String(), "outbound", peerApp},
		{"app outbound to a VIP is captured", pod, -1, "", "240.240.1.2:80", "outbound", netip.MustParseAddrPort("240.240.1.2:80")},
		{"excluded outbound port is not", pod, -1, "", peerIP.String() + ":9999", "peer-9999", netip.AddrPort{}},
		{"sidecar outbound (uid 1337) is not", pod, 1337, "", peerApp.String(), "peer-app", netip.AddrPort{}},
		{"app loopback is not", pod, -1, "", "127.0.0.1:8080", "app", netip.AddrPort{}},
		{"app to its own pod IP is not", pod, -1, "", podApp.String(), "app", netip.AddrPort{}},
		{"sidecar to its own pod IP goes inbound", pod, 1337, "", podApp.String(), "inbound", podApp},
		{"inbound passthrough from 127.0.0.6 is not", pod, -1, InboundPassthroughSource, podApp.String(), "app", netip.AddrPort{}},
		{"inbound is captured", peer, -1, "", podApp.String(), "inbound", podApp},
		{"inbound to an undeclared port is captured", peer, -1, "", podIP.String() + ":7777", "inbound", netip.MustParseAddrPort(podIP.String() + ":7777")},
		{"inbound to the admin port is not", peer, -1, "", podIP.String() + ":15000", "admin", netip.AddrPort{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("c%d", i)
			dialFrom(t, tt.from, tt.uid, tt.src, tt.dst, id)
			select {
			case a := <-got:
				if a.listener != tt.wantListener || a.id != id {
					t.Fatalf("connection %s to %s landed on %q (%+v), want %q", id, tt.dst, a.listener, a, tt.wantListener)
				}
				if tt.wantOrigDst.IsValid() && (a.origDst != tt.wantOrigDst || !a.redirect) {
					t.Errorf("original destination %v (redirected %v), want %v (redirected)", a.origDst, a.redirect, tt.wantOrigDst)
				}
				if !tt.wantOrigDst.IsValid() && a.redirect {
					t.Errorf("connection reported as redirected to %v", a.origDst)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("connection %s to %s never arrived", id, tt.dst)
			}
		})
	}

	t.Run("app DNS over UDP is captured", func(t *testing.T) {
		err := netns.Do(pod, func() error {
			c, err := net.Dial("udp4", peerIP.String()+":53")
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("query"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		dns.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, _, err := dns.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "query" {
			t.Fatalf("DNS query not redirected to 15053: %q, %v", buf[:n], err)
		}
	})

	if err := Cleanup(ctx, InNetns(pod)); err != nil {
		t.Fatal(err)
	}
	if ok, err := Installed(ctx, InNetns(pod)); err != nil || ok {
		t.Fatalf("after Cleanup, rules installed = %v (%v)", ok, err)
	}
}
