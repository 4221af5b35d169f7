//go:build linux

package netns_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/netns"
	"skein.dev/skein/internal/testutil/netnstest"
)

// helperEnv makes the test binary act as `skein netns-exec`.
const helperEnv = "SKEIN_NETNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if raw := os.Getenv(helperEnv); raw != "" {
		var o netns.ExecOptions
		if err := json.Unmarshal([]byte(raw), &o); err != nil {
			panic(err)
		}
		os.Unsetenv(helperEnv)
		o.Env = nil
		err := netns.Exec(o)
		os.Stderr.WriteString("exec: " + err.Error() + "\n")
		os.Exit(127)
	}
	if netnstest.Unavailable() == "" {
		netnstest.Sweep(netnstest.Prefix)
	}
	code := m.Run()
	if netnstest.Unavailable() == "" {
		netnstest.Sweep(netnstest.Prefix)
	}
	os.Exit(code)
}

func TestExecJoinsNamespaceAndEtc(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.Netns(t)
	if err := netns.WriteEtc(ns, "resolv.conf", "nameserver 100.65.0.1\nsearch default.svc.cluster.local\n"); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	for _, uid := range []int{-1, 1337} {
		o := netns.ExecOptions{Netns: ns, UID: uid, GID: uid,
			Argv: []string{"sh", "-c", "cat /etc/resolv.conf; id -u; readlink /proc/self/ns/net; ls /sys/class/net"}}
		raw, _ := json.Marshal(o)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("uid %d: %v\n%s", uid, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < 4 || lines[0] != "nameserver 100.65.0.1" {
			t.Fatalf("uid %d: /etc/resolv.conf is not the namespace's:\n%s", uid, out)
		}
		wantUID := "0"
		if uid >= 0 {
			wantUID = "1337"
		}
		if lines[2] != wantUID {
			t.Errorf("runs as uid %s, want %s", lines[2], wantUID)
		}
		if lines[3] == self {
			t.Errorf("process is still in the test's network namespace %s", self)
		}
		if strings.Join(lines[4:], " ") != "lo" {
			t.Errorf("/sys/class/net lists %v, want only the namespace's lo", lines[4:])
		}
	}
	// The host's resolv.conf is untouched.
	if b, _ := os.ReadFile("/etc/resolv.conf"); strings.Contains(string(b), "100.65.0.1") {
		t.Fatal("the bind mount leaked to the host")
	}
}

func TestDoAndDial(t *testing.T) {
	netnstest.Require(t)
	a, b, _, ipB := netnstest.Pair(t)
	ln, err := netns.Listen(b, "tcp4", ipB.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	// The host cannot reach b's address; a can.
	if c, err := net.DialTimeout("tcp4", ln.Addr().String(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("dialled a namespace's address from the host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netns.Dial(ctx, a, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()
	if err := netns.Do("skt-no-such-ns", func() error { return nil }); err == nil {
		t.Fatal("Do in a missing namespace must fail")
	}
}
