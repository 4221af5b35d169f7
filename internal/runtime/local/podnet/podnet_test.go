//go:build linux

package podnet

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/netns"
	"skein.dev/skein/internal/testutil/netnstest"
)

func TestChooseSubnet(t *testing.T) {
	p, err := chooseSubnet(netip.MustParsePrefix("100.65.0.0/16"), "abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if p.Bits() != 24 || !netip.MustParsePrefix("100.65.0.0/16").Contains(p.Addr()) {
		t.Errorf("subnet %s", p)
	}
	q, _ := chooseSubnet(netip.MustParsePrefix("100.65.0.0/16"), "abcdef")
	if p != q {
		t.Errorf("not stable: %s then %s", p, q)
	}
	if p, err := chooseSubnet(netip.MustParsePrefix("100.66.3.0/26"), "abcdef"); err != nil || p.String() != "100.66.3.0/26" {
		t.Errorf("a small CIDR is used whole: %s %v", p, err)
	}
	if _, err := chooseSubnet(netip.MustParsePrefix("100.66.3.0/30"), "abcdef"); err == nil {
		t.Error("a /30 must be refused")
	}
	if got := lastAddr(netip.MustParsePrefix("100.65.7.0/24")); got.String() != "100.65.7.255" {
		t.Errorf("lastAddr = %s", got)
	}
}

func TestPodsOnTheBridge(t *testing.T) {
	netnstest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stateDir := t.TempDir()
	// A deferred sweep: whatever happens below, nothing of this instance stays.
	t.Cleanup(func() {
		_ = Recover(context.Background(), stateDir, nil)
		if left := Leftovers(context.Background(), stateDir); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
	n, err := Setup(ctx, Options{StateDir: stateDir, CIDR: netip.MustParsePrefix("100.65.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.AddPod(ctx, "a-0.default", "default", "svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod(ctx, "b-0.default", "default", "svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if a.IP == b.IP || !n.Subnet.Contains(a.IP) || a.IP == n.Gateway {
		t.Fatalf("addresses: gateway %s, a %s, b %s in %s", n.Gateway, a.IP, b.IP, n.Subnet)
	}
	resolv, _ := os.ReadFile(netns.EtcDir + "/" + a.Netns + "/resolv.conf")
	if !strings.Contains(string(resolv), "nameserver "+n.Gateway.String()) || !strings.Contains(string(resolv), "search default.svc.cluster.local svc.cluster.local cluster.local") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	// b serves; a and the host reach it.
	ln, err := netns.Listen(b.Netns, "tcp4", net.JoinHostPort(b.IP.String(), "8080"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	read := func(c net.Conn, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := read(netns.Dial(ctx, a.Netns, "tcp4", ln.Addr().String())); got != "hi" {
		t.Errorf("pod to pod: %q", got)
	}
	if got := read(net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)); got != "hi" {
		t.Errorf("host to pod: %q", got)
	}

	// A second instance (another state dir) gets its own bridge and subnet.
	other := t.TempDir()
	t.Cleanup(func() { _ = Recover(context.Background(), other, nil) })
	n2, err := Setup(ctx, Options{StateDir: other})
	if err != nil {
		t.Fatal(err)
	}
	if n2.Bridge == n.Bridge || n2.Subnet.Overlaps(n.Subnet) {
		t.Errorf("instances clash: %s %s and %s %s", n.Bridge, n.Subnet, n2.Bridge, n2.Subnet)
	}
	if err := n2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// As after a SIGKILL: nothing closed, the next start recovers from the record.
	if left := Leftovers(ctx, stateDir); len(left) < 4 {
		t.Fatalf("expected the running instance's objects, got %v", left)
	}
	n3, err := Setup(ctx, Options{StateDir: stateDir})
	if err != nil {
		t.Fatalf("restart after a kill: %v", err)
	}
	for _, ns := range []string{a.Netns, b.Netns} {
		if netns.Exists(ns) {
			t.Errorf("namespace %s of the killed run survived the restart", ns)
		}
	}
	if err := n3.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := Leftovers(ctx, stateDir); len(left) > 0 {
		t.Errorf("after Close: %v", left)
	}
}
