package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// meshYAML is the benchmark mesh: a fortio server (HTTP echo and gRPC ping) behind its
// sidecar, and an idle client workload whose sidecar the load generator enters through
// the per-upstream ports SERVER_SERVICE_PORT_HTTP and SERVER_SERVICE_PORT_GRPC.
const meshYAML = `apiVersion: v1
kind: Service
metadata: {name: server, namespace: default}
spec:
  selector: {app: server}
  ports:
  - {name: http, port: 8080, targetPort: http}
  - {name: grpc, port: 8079, targetPort: grpc}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: server, namespace: default, labels: {app: server}}
spec:
  serviceAccount: server
  command: [%q, server, -http-port, "127.0.0.1:$(PORT_HTTP)", -grpc-port, "127.0.0.1:$(PORT_GRPC)",
    -redirect-port, disabled, -tcp-port, disabled, -udp-port, disabled, -loglevel, Warning]
  ports:
  - {name: http, containerPort: 8080}
  - {name: grpc, containerPort: 8079}
---
apiVersion: skein.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client}}
spec:
  serviceAccount: client
  command: ["skein", "echo"]
  ports: [{name: http, containerPort: 8080}]
`

// strictMTLS is added to the mesh with -skein-mtls=strict (needs PeerAuthentication
// support, from the security issue).
const strictMTLS = `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
`

// skeinMesh is a running `skein up` with the benchmark mesh.
type skeinMesh struct {
	up      *exec.Cmd
	log     bytes.Buffer
	state   string
	skein   string
	app     map[string]int // protocol -> the fortio server's port (the floor)
	client  map[string]int // protocol -> client sidecar's per-upstream port
	proxies []int          // sidecar pids: client, server
	admins  []string       // sidecar admin addresses: client, server
	mtls    string         // "mTLS" or "plaintext", read from the client sidecar's config
}

type upStatus struct {
	Workloads []struct {
		Name     string `json:"name"`
		Replicas []struct {
			ProxyPid int    `json:"proxyPid"`
			Admin    string `json:"admin"`
		} `json:"replicas"`
	} `json:"workloads"`
}

func startSkein(ctx context.Context, skein, fortio, dir, mtlsMode string, pprof bool) (*skeinMesh, error) {
	m := &skeinMesh{skein: skein, state: filepath.Join(dir, "skein-state"), app: map[string]int{}, client: map[string]int{}}
	meshDir := filepath.Join(dir, "mesh")
	if err := os.MkdirAll(meshDir, 0o755); err != nil {
		return nil, err
	}
	yaml := fmt.Sprintf(meshYAML, fortio)
	if mtlsMode == "strict" {
		yaml += strictMTLS
	}
	if err := os.WriteFile(filepath.Join(meshDir, "mesh.yaml"), []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	m.up = exec.Command(skein, "up", meshDir, "--state-dir", m.state, "--isolation", "none")
	m.up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	m.up.Stdout, m.up.Stderr = &m.log, &m.log
	m.up.Env = os.Environ()
	if pprof {
		m.up.Env = append(m.up.Env, "SKEIN_PROXY_PPROF=1")
	}
	if err := m.up.Start(); err != nil {
		return nil, err
	}
	fail := func(err error) (*skeinMesh, error) {
		m.stop()
		return nil, fmt.Errorf("%w\nskein up output:\n%s", err, m.log.String())
	}
	if out, err := exec.CommandContext(ctx, skein, "status", "--state-dir", m.state, "--wait", "90s").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mesh not ready: %v\n%s", err, out))
	}
	out, err := exec.CommandContext(ctx, skein, "status", "--state-dir", m.state, "-o", "json").Output()
	if err != nil {
		return fail(fmt.Errorf("skein status -o json: %w%s", err, stderrOf(err)))
	}
	var st upStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return fail(err)
	}
	for _, name := range []string{"client", "server"} {
		for _, w := range st.Workloads {
			if w.Name == name && len(w.Replicas) > 0 {
				m.proxies = append(m.proxies, w.Replicas[0].ProxyPid)
				m.admins = append(m.admins, w.Replicas[0].Admin)
			}
		}
	}
	srvEnv, err := m.env(ctx, "server")
	if err != nil {
		return fail(err)
	}
	cliEnv, err := m.env(ctx, "client")
	if err != nil {
		return fail(err)
	}
	for proto, names := range map[string][2]string{
		protoHTTP: {"PORT_HTTP", "SERVER_SERVICE_PORT_HTTP"},
		protoGRPC: {"PORT_GRPC", "SERVER_SERVICE_PORT_GRPC"},
	} {
		m.app[proto], _ = strconv.Atoi(srvEnv[names[0]])
		m.client[proto], _ = strconv.Atoi(cliEnv[names[1]])
		if m.app[proto] == 0 || m.client[proto] == 0 {
			return fail(fmt.Errorf("%s: app port %q, client sidecar port %q not found", proto, srvEnv[names[0]], cliEnv[names[1]]))
		}
	}
	if len(m.proxies) != 2 {
		return fail(fmt.Errorf("want 2 sidecars, found %d", len(m.proxies)))
	}
	m.mtls = "plaintext"
	// The outbound cluster to the server carries a TLS transport socket (or auto-mTLS
	// socket matches) when the mesh gives the sidecars mTLS; config_dump is protojson.
	if dump, err := httpGet(ctx, "http://"+m.admins[0]+"/config_dump"); err == nil &&
		(strings.Contains(string(dump), `"transportSocket"`) || strings.Contains(string(dump), `"transportSocketMatches"`)) {
		m.mtls = "mTLS"
	}
	if mtlsMode == "strict" && m.mtls != "mTLS" {
		return fail(fmt.Errorf("-skein-mtls=strict, but the client sidecar's config has no transport_socket"))
	}
	return m, nil
}

func (m *skeinMesh) env(ctx context.Context, workload string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, m.skein, "exec", "--state-dir", m.state, workload, "--", "env").Output()
	if err != nil {
		return nil, fmt.Errorf("skein exec %s -- env: %w%s", workload, err, stderrOf(err))
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}

func (m *skeinMesh) stop() {
	if m.up.Process == nil {
		return
	}
	_ = m.up.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = m.up.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-m.up.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// goCounters reads the proxies' cumulative Go allocation counters from their
// /stats/prometheus (the Go collector): mallocs and bytes allocated, summed.
func (m *skeinMesh) goCounters(ctx context.Context) (mallocs, bytes float64) {
	for _, a := range m.admins {
		b, err := httpGet(ctx, "http://"+a+"/stats/prometheus")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "go_memstats_mallocs_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				mallocs += f
			}
			if v, ok := strings.CutPrefix(l, "go_memstats_alloc_bytes_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				bytes += f
			}
		}
	}
	return mallocs, bytes
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
