//go:build linux

// Package netnstest helps tests that need root networking: skip cleanly where it is
// not available, and create network namespaces (and veths) that are removed when the
// test ends, pass or fail, plus a sweep for anything a crashed earlier run left.
package netnstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/netns"
)

// Prefix starts the name of every namespace and link tests create, so Sweep can find
// leftovers.
const Prefix = "skt"

// Require skips the test unless it runs as root with `ip`, `iptables-save` and
// `iptables-restore` available, naming what is missing.
func Require(t testing.TB) {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		t.Skip(reason)
	}
}

// Unavailable says why root networking tests cannot run here ("" when they can).
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces and iptables); CI runs these as root"
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("needs %s in PATH (Debian packages iproute2 and iptables)", bin)
		}
	}
	return ""
}

// Name returns a fresh name "skt<kind><random>" short enough for a link name (15).
func Name(kind string) string {
	return fmt.Sprintf("%s%s%06x", Prefix, kind, rand.IntN(1<<24))
}

// Netns creates a namespace with loopback up, deleted when the test ends.
func Netns(t testing.TB) string {
	t.Helper()
	name := Name("n")
	ctx := context.Background()
	if err := netns.Add(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Pair connects two new namespaces with a veth pair: a gets 10.250.x.1/24 and a
// default route via b, which gets .2; it returns the names and addresses. Everything goes when the test ends.
func Pair(t testing.TB) (a, b string, ipA, ipB net.IP) {
	t.Helper()
	a, b = Netns(t), Netns(t)
	x := rand.IntN(250) + 1
	ipA, ipB = net.IPv4(10, 250, byte(x), 1), net.IPv4(10, 250, byte(x), 2)
	va, vb := Name("v"), Name("v")
	mustRun(t, "ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
	mustRun(t, "ip", "-n", a, "addr", "add", ipA.String()+"/24", "dev", va)
	mustRun(t, "ip", "-n", b, "addr", "add", ipB.String()+"/24", "dev", vb)
	mustRun(t, "ip", "-n", a, "link", "set", va, "up")
	mustRun(t, "ip", "-n", b, "link", "set", vb, "up")
	mustRun(t, "ip", "-n", a, "route", "add", "default", "via", ipB.String())
	return a, b, ipA, ipB
}

func mustRun(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := netns.Run(ctx, args...); err != nil {
		t.Fatal(err)
	}
}

// Sweep deletes namespaces and links whose names start with prefix: call it from
// TestMain (before and after m.Run) so a test binary killed mid-way leaves nothing
// for the next run.
func Sweep(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			_ = netns.Delete(ctx, n)
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, prefix) {
			_, _ = netns.Run(ctx, "ip", "link", "delete", i.Name)
		}
	}
}

// Leftovers lists namespaces and host links whose names start with prefix.
func Leftovers(prefix string) []string {
	var out []string
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, "netns "+n)
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, prefix) {
			out = append(out, "link "+i.Name)
		}
	}
	return out
}
