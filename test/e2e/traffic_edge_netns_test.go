package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/model"
)

// TestNetnsServiceEntry: in pods with transparent capture and REGISTRY_ONLY, a
// ServiceEntry host gets a VIP the pod's DNS proxy answers, and traffic to it is
// allowed; an HTTP request for an undeclared host is answered 502 by the sidecar
// (Istio's block_all), and a connection to an undeclared address is refused.
func TestNetnsServiceEntry(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	dir := copyDir(t, netnsMeshDir)
	m := startMeshWith(t, dir, "netns", "--outbound-traffic-policy", "REGISTRY_ONLY")
	st, err := m.status()
	if err != nil || st.PodGateway == "" {
		t.Fatalf("status: %v %+v", err, st)
	}
	// A server outside the mesh, on the bridge's address (the host side).
	ln, err := net.Listen("tcp", net.JoinHostPort(st.PodGateway, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "external "+r.Host)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	// Added while the mesh runs: the edit is pushed to the sidecars.
	writeFile(t, filepath.Join(dir, "serviceentry.yaml"), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: %[1]s, ports: {http: %[2]d}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-dns}
spec:
  hosts: [ext-dns.example.com]
  addresses: [240.0.7.7]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: %[1]s, ports: {http: %[2]d}}]
`, st.PodGateway, port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := m.inPod("client", "curl -sS --max-time 5 http://ext.example.com/")
		if err == nil && strings.TrimSpace(out) == "external ext.example.com" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServiceEntry host not reachable under REGISTRY_ONLY: %v %q\n%s", err, out, m.logs())
		}
		time.Sleep(300 * time.Millisecond)
	}

	cases := []struct {
		name, script string
		check        func(out string, err error) string // "" when fine
	}{
		{"static entry through its allocated VIP", "getent hosts ext.example.com | cut -d' ' -f1", func(out string, err error) string {
			a, perr := netip.ParseAddr(strings.TrimSpace(out))
			if err != nil || perr != nil || !model.VIPRange.Contains(a) {
				return fmt.Sprintf("DNS answer %q (%v): want a VIP in %s", out, err, model.VIPRange)
			}
			return ""
		}},
		{"dns entry at its declared address", "getent hosts ext-dns.example.com | cut -d' ' -f1", func(out string, err error) string {
			if strings.TrimSpace(out) != "240.0.7.7" {
				return fmt.Sprintf("DNS answer %q (%v), want 240.0.7.7", out, err)
			}
			return ""
		}},
		{"dns entry reached", "curl -sS --max-time 5 http://ext-dns.example.com/", func(out string, err error) string {
			if err != nil || strings.TrimSpace(out) != "external ext-dns.example.com" {
				return fmt.Sprintf("%v %q", err, out)
			}
			return ""
		}},
		{"undeclared host answered 502", "curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: nope.example.com' http://ext.example.com/", func(out string, err error) string {
			if strings.TrimSpace(out) != "502" {
				return fmt.Sprintf("status %q (%v), want 502", out, err)
			}
			return ""
		}},
		{"undeclared address refused", fmt.Sprintf("curl -sS --max-time 5 http://%s:%d/", st.PodGateway, port), func(out string, err error) string {
			if err == nil || strings.Contains(out, "external") {
				return fmt.Sprintf("REGISTRY_ONLY let it through: %q", out)
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := m.inPod("client", tc.script)
			if msg := tc.check(out, err); msg != "" {
				t.Error(msg)
			}
		})
	}
	waitAccessLog(t, m, "client", func(l string) bool {
		return strings.Contains(l, `"authority":"nope.example.com"`) && strings.Contains(l, `"response_code":502`) && strings.Contains(l, `"route_name":"block_all"`)
	})
	waitAccessLog(t, m, "client", func(l string) bool {
		return strings.Contains(l, `"upstream_cluster":"BlackHoleCluster"`) && strings.Contains(l, `"response_flags":"UH"`)
	})
}
