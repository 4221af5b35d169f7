package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/netns"
	"skein.dev/skein/internal/runtime/local/podnet"
)

const netnsMeshDir = "testdata/netns"

// replica returns the status of a workload's first replica.
func (m *mesh) replica(workload string) api.Replica {
	m.t.Helper()
	st, err := m.status()
	if err != nil {
		m.t.Fatal(err)
	}
	for _, w := range st.Workloads {
		if w.Name == workload && len(w.Replicas) > 0 {
			return w.Replicas[0]
		}
	}
	m.t.Fatalf("no replica of %s in status", workload)
	return api.Replica{}
}

// inPod runs a shell command inside a workload's pod with `skein exec`.
func (m *mesh) inPod(workload, script string) (string, error) {
	m.t.Helper()
	return m.skein("exec", workload, "--", "bash", "-c", script)
}

// metric sums the samples of a counter in a sidecar's /stats/prometheus whose labels
// contain every given name="value".
func metric(t *testing.T, admin, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if ok {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestNetnsUnmodifiedClients: apps in pods call services by name with no proxy
// settings; DNS answers the service's VIP, the capture rules bring the connection to
// the sidecar, and it routes and counts it.
func TestNetnsUnmodifiedClients(t *testing.T) {
	m := startMeshWith(t, copyDir(t, netnsMeshDir), "netns")
	client := m.replica("client")

	t.Run("DNS answers the VIP for every name form", func(t *testing.T) {
		for _, name := range []string{"web", "web.default", "web.default.svc", "web.default.svc.cluster.local"} {
			out, err := m.inPod("client", "getent hosts "+name)
			f := strings.Fields(out)
			if err != nil || len(f) == 0 {
				t.Fatalf("getent hosts %s: %v\n%s", name, err, out)
			}
			if a, err := netip.ParseAddr(f[0]); err != nil || !model.VIPRange.Contains(a) {
				t.Errorf("%s resolves to %q, want an address in %s", name, f[0], model.VIPRange)
			}
		}
		if out, err := m.inPod("client", "getent hosts nope.default.svc.cluster.local"); err == nil {
			t.Errorf("an unknown cluster name resolved: %s", out)
		}
	})

	t.Run("Go client without proxy settings", func(t *testing.T) {
		env := m.execEnv("client")
		if _, ok := env["HTTP_PROXY"]; ok {
			t.Fatalf("isolation netns must not set HTTP_PROXY: %v", env)
		}
		for _, url := range []string{"http://web:8080/", "http://web.default:8080/", "http://web.default.svc.cluster.local:8080/", "http://web-sniffed:8080/"} {
			s := m.call("client", url, "-n", "20", "-c", "2")
			if s.Status[200] != 20 {
				t.Errorf("%s: %+v", url, s)
			}
		}
	})

	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl is not installed (Debian package curl)")
		}
		for _, url := range []string{"http://web:8080/", "http://web.default.svc.cluster.local:8080/", "http://web-sniffed:8080/x"} {
			out, err := m.skein("exec", "client", "--", "curl", "-sS", "--max-time", "10", url)
			var reply struct {
				Workload string `json:"workload"`
				Host     string `json:"host"`
			}
			if err != nil || json.Unmarshal([]byte(out), &reply) != nil {
				t.Fatalf("curl %s: %v\n%s\n%s", url, err, out, m.logs())
			}
			if !strings.HasPrefix(reply.Workload, "web") {
				t.Errorf("curl %s answered by %q", url, reply.Workload)
			}
		}
	})

	t.Run("the client's sidecar has HTTP metrics for both services", func(t *testing.T) {
		for _, svc := range []string{"web.default.svc.cluster.local", "web-sniffed.default.svc.cluster.local"} {
			if n := metric(t, client.Admin, "istio_requests_total", `reporter="source"`, `destination_service="`+svc+`"`, `response_code="200"`); n < 20 {
				t.Errorf("istio_requests_total for %s = %v, want >= 20 (the sniffed port must be seen as HTTP too)", svc, n)
			}
		}
		if n := metric(t, client.Admin, "skein_dns_queries_total", `result="local"`); n == 0 {
			t.Error("the sidecar's DNS proxy answered nothing")
		}
	})

	t.Run("explain follows the call into web's pod", func(t *testing.T) {
		out, err := m.skein("explain", "client", "http://web:8080/x")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"at the destination: web-0.default", "captured inbound listener", "filter chain:  0.0.0.0_8080", "chain of a connection to 240.240.", "call outcome:  forwarded to web.default's app"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestNetnsServerFirst: a protocol where the server speaks first passes through two
// sidecars unharmed, after at most the detection timeout per detecting hop when its
// port has no declared protocol, with no wait when it is declared TCP.
func TestNetnsServerFirst(t *testing.T) {
	m := startMeshWith(t, copyDir(t, netnsMeshDir), "netns")
	for _, tc := range []struct{ host, port, greeting string }{
		{"greeter", "2525", "220 greeter ready"},
		{"greeter-tcp", "2526", "220 greeter-tcp ready"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			script := fmt.Sprintf(`start=$(date +%%s%%N)
exec 3<>/dev/tcp/%s/%s || exit 3
IFS= read -r -t 10 greeting <&3 || exit 4
end=$(date +%%s%%N)
echo hello >&3
IFS= read -r -t 10 echo <&3 || exit 5
printf '%%s|%%s|%%d\n' "${greeting%%$'\r'}" "$echo" $(( (end-start)/1000000 ))`, tc.host, tc.port)
			out, err := m.inPod("client", script)
			parts := strings.Split(strings.TrimSpace(out), "|")
			if err != nil || len(parts) != 3 {
				t.Fatalf("%v\n%s\n%s", err, out, m.logs())
			}
			if parts[0] != tc.greeting || parts[1] != "hello" {
				t.Errorf("greeting %q, echo %q; want %q, hello", parts[0], parts[1], tc.greeting)
			}
			ms, _ := strconv.Atoi(parts[2])
			t.Logf("greeting from %s after %d ms (detection timeout %v per detecting sidecar)", tc.host, ms, model.DefaultProtocolDetectionTimeout)
			// Not a performance assertion: a stall (Linkerd's 10 s, Istio's forever)
			// is what must not happen; 3 s is far above the expected 2×100 ms.
			if ms > 3000 {
				t.Errorf("greeting took %d ms: server-first traffic is stalled by protocol detection", ms)
			}
		})
	}
}

// TestNetnsDirectPodAccess: a process in one pod that dials another pod's app port
// directly does not reach the app directly: the target pod's capture rules hand the
// connection to its sidecar, also when the caller bypasses its own sidecar.
func TestNetnsDirectPodAccess(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	m := startMeshWith(t, copyDir(t, netnsMeshDir), "netns")
	web, client := m.replica("web"), m.replica("client")
	target := "http://" + net.JoinHostPort(web.IP, "8080") + "/"
	before := metric(t, web.Admin, "istio_requests_total", `reporter="destination"`)
	for _, who := range []struct {
		name string
		argv []string
	}{
		{"as the app", []string{"exec", "client", "--", "curl", "-sS", "--max-time", "10", target}},
		// uid 1337 is the sidecar's: the client pod's rules do not capture it.
		{"bypassing its own sidecar", []string{"netns-exec", "--netns", client.Netns, "--uid", "1337", "--gid", "1337", "--", "curl", "-sS", "--max-time", "10", target}},
	} {
		t.Run(who.name, func(t *testing.T) {
			var out string
			var err error
			if who.argv[0] == "netns-exec" {
				out, err = run(who.argv...)
			} else {
				out, err = m.skein(who.argv...)
			}
			var reply struct {
				Workload   string `json:"workload"`
				RemoteAddr string `json:"remoteAddr"`
			}
			if err != nil || json.Unmarshal([]byte(out), &reply) != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			// The app sees its sidecar (on loopback) as the peer, not the caller's pod.
			if !strings.HasPrefix(reply.RemoteAddr, "127.0.0.1:") {
				t.Errorf("the app saw the connection from %s: it did not go through the web pod's sidecar", reply.RemoteAddr)
			}
		})
	}
	if after := metric(t, web.Admin, "istio_requests_total", `reporter="destination"`); after-before < 2 {
		t.Errorf("web's sidecar counted %v inbound requests, want 2", after-before)
	}
}

// TestNetnsStrictMTLSRefusesDirectAccess is the STRICT half of the check: with
// PeerAuthentication STRICT, a plaintext connection to another pod's app port lands in
// that pod's sidecar and is refused. It runs once the config loader knows the kind
// (the mTLS work); until then it skips, saying so.
func TestNetnsStrictMTLSRefusesDirectAccess(t *testing.T) {
	dir := copyDir(t, netnsMeshDir)
	writeFile(t, filepath.Join(dir, "strict.yaml"), `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
`)
	if _, err := config.Load(dir); err != nil {
		if strings.Contains(err.Error(), "unsupported kind") {
			t.Skip("PeerAuthentication is not supported yet; TestNetnsDirectPodAccess covers the capture half")
		}
		t.Fatal(err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	m := startMeshWith(t, dir, "netns")
	web, client := m.replica("web"), m.replica("client")
	if resp, err := http.Get("http://" + web.Admin + "/config_dump"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "ROOTCA") {
			t.Skip("skein up does not run mesh mTLS yet (no CA in the local runtime): the sidecars have no trust bundle; the translator's STRICT virtualInbound is covered by the capture-mtls golden case")
		}
	}
	target := "http://" + net.JoinHostPort(web.IP, "8080") + "/"
	out, err := run("netns-exec", "--netns", client.Netns, "--uid", "1337", "--gid", "1337", "--", "curl", "-sS", "--max-time", "10", target)
	if err == nil && strings.Contains(out, `"workload"`) {
		t.Fatalf("a plaintext connection reached the app under STRICT mTLS:\n%s", out)
	}
	// Through the mesh (mTLS between sidecars) it still works.
	if s := m.call("client", "http://web:8080/", "-n", "5"); s.Status[200] != 5 {
		t.Errorf("mesh call under STRICT: %+v", s)
	}
}

// TestNetnsOutboundTrafficPolicy: a destination that is no mesh service is reached
// under ALLOW_ANY (PassthroughCluster) and refused under REGISTRY_ONLY.
func TestNetnsOutboundTrafficPolicy(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	for _, policy := range []string{"ALLOW_ANY", "REGISTRY_ONLY"} {
		t.Run(policy, func(t *testing.T) {
			dir := copyDir(t, netnsMeshDir)
			// A client whose capture rules leave the pod network alone (Istio's
			// excludeOutboundIPRanges annotation): its sidecar never sees that traffic.
			writeFile(t, filepath.Join(dir, "excluded.yaml"), `apiVersion: skein.dev/v1alpha1
kind: Workload
metadata:
  name: client-excluded
  labels: {app: client-excluded}
  annotations:
    traffic.sidecar.istio.io/excludeOutboundIPRanges: "100.64.0.0/10"
spec:
  command: ["skein", "echo"]
`)
			m := startMeshWith(t, dir, "netns", "--outbound-traffic-policy", policy)
			st, err := m.status()
			if err != nil || st.PodGateway == "" {
				t.Fatalf("status: %v %+v", err, st)
			}
			// A non-mesh server on this machine, on the bridge's address.
			ln, err := net.Listen("tcp", net.JoinHostPort(st.PodGateway, "0"))
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "external") })}
			go srv.Serve(ln)
			defer srv.Close()
			out, err := m.skein("exec", "client", "--", "curl", "-sS", "--max-time", "10", "http://"+ln.Addr().String()+"/")
			client := m.replica("client")
			switch policy {
			case "ALLOW_ANY":
				if err != nil || strings.TrimSpace(out) != "external" {
					t.Fatalf("passthrough: %v %q", err, out)
				}
				if n := metric(t, client.Admin, "istio_tcp_connections_opened_total", `destination_service_name="PassthroughCluster"`); n < 1 {
					t.Errorf("PassthroughCluster connections = %v", n)
				}
			case "REGISTRY_ONLY":
				if err == nil && strings.Contains(out, "external") {
					t.Fatalf("REGISTRY_ONLY let a non-mesh destination through: %q", out)
				}
				// Mesh services still work.
				if s := m.call("client", "http://web:8080/", "-n", "5"); s.Status[200] != 5 {
					t.Errorf("mesh call under REGISTRY_ONLY: %+v", s)
				}
			}
			// Excluded from capture: reached directly whatever the policy.
			out, err = m.skein("exec", "client-excluded", "--", "curl", "-sS", "--max-time", "10", "http://"+ln.Addr().String()+"/")
			if err != nil || strings.TrimSpace(out) != "external" {
				t.Errorf("excluded range under %s: %v %q", policy, err, out)
			}
			if n := metric(t, m.replica("client-excluded").Admin, "istio_tcp_connections_opened_total"); n != 0 {
				t.Errorf("the excluded client's sidecar proxied %v connections, want 0", n)
			}
		})
	}
}

// TestNetnsKill9: after `kill -9` of skein up, its processes die with it; what it
// created in the kernel stays until the next skein up with the same state dir, which
// removes it, starts cleanly and leaves nothing stale.
func TestNetnsKill9(t *testing.T) {
	dir := copyDir(t, netnsMeshDir)
	first := startMeshWith(t, dir, "netns")
	st, err := first.status()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	var namespaces []string
	for _, w := range st.Workloads {
		for _, r := range w.Replicas {
			pids = append(pids, r.Pid, r.ProxyPid)
			namespaces = append(namespaces, r.Netns)
		}
	}
	first.kill()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for pid > 0 && running(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid > 0 && running(pid) {
			t.Errorf("process %d outlived kill -9 of skein up", pid)
		}
	}
	if left := podnet.Leftovers(context.Background(), first.stateDir); len(left) == 0 {
		t.Fatal("expected the killed run's namespaces to still exist (nothing could remove them)")
	}

	second := startMeshIn(t, dir, first.stateDir, "netns")
	names, _ := netns.List()
	var ours []string
	for _, n := range names {
		if strings.HasPrefix(n, "skein-"+podnet.InstanceID(first.stateDir)+"-") {
			ours = append(ours, n)
		}
	}
	if len(ours) != len(namespaces) {
		t.Errorf("after the restart ip netns list has %d of this instance's namespaces, want %d (one per replica): %v", len(ours), len(namespaces), ours)
	}
	if s := second.call("client", "http://web:8080/", "-n", "10"); s.Status[200] != 10 {
		t.Errorf("after the restart: %+v", s)
	}
}

// running reports whether a process exists and is not a zombie (a killed child of a
// killed parent waits for init to reap it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// kill SIGKILLs skein up alone (not its process group), as `kill -9 PID` would.
func (m *mesh) kill() {
	m.killed = true
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}

// startMeshIn is startMeshWith with a given state dir (a restart).
func startMeshIn(t *testing.T, configDir, stateDir, isolation string) *mesh {
	t.Helper()
	m := &mesh{t: t, configDir: configDir, stateDir: stateDir, isolation: isolation, out: &syncBuffer{}}
	m.cmd = exec.Command(skeinBin, "up", configDir, "--state-dir", stateDir, "--isolation", isolation)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	if out, err := m.skein("status", "--wait", "90s"); err != nil {
		t.Fatalf("mesh not ready: %v\n%s\n--- skein up output:\n%s\n%s", err, out, m.out.String(), m.logs())
	}
	return m
}

// run runs the skein binary with args as they are (no state dir).
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, skeinBin, args...).CombinedOutput()
	return string(out), err
}
