package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"skein.dev/skein/internal/capture"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/netns"
	"skein.dev/skein/internal/proxy/dns"
	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/supervisor"
)

// Isolation netns: every replica is a pod (internal/runtime/local/podnet) whose
// traffic is captured as istio-init does (internal/capture). The sidecar runs in the
// pod as a user the rules exempt (1337, capture.DefaultProxyUID, or with separate
// users one of its own: users.go); the app runs as its own user (else skein up's) and
// listens on its container port. Both are started through
// `skein netns-exec`, which joins the pod's namespace and mounts its resolv.conf.

// AdminPort and MetricsPort are the sidecar's admin and merged-metrics ports in a pod
// (Istio's), bound on the pod IP so the runtime and tools reach them over the bridge;
// both are excluded from inbound capture.
const (
	AdminPort   = 15000
	MetricsPort = 15020
)

// netnsUnavailable says why isolation netns cannot run here ("" when it can).
func netnsUnavailable() string {
	if runtime.GOOS != "linux" {
		return "network namespaces need Linux"
	}
	if os.Geteuid() != 0 {
		return "not running as root (network namespaces and iptables need it)"
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s not found (Debian: apt-get install iproute2 iptables)", bin)
		}
	}
	if caps, err := effectiveCaps(); err == nil {
		const netAdmin, sysAdmin = 12, 21
		if caps&(1<<netAdmin) == 0 || caps&(1<<sysAdmin) == 0 {
			return "root without CAP_NET_ADMIN and CAP_SYS_ADMIN (a restricted container?)"
		}
	}
	return ""
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff")
}

// setupPodNetwork creates the bridge, makes the control plane reachable from pods
// (xDS on the bridge's gateway address, *xdsLis then serves both) and starts the node
// DNS resolver on the gateway. stop undoes it all, after the pods are gone.
func (m *Mesh) setupPodNetwork(ctx context.Context, suffix string, xdsLis *net.Listener) (stop func(), err error) {
	pods, err := podnet.Setup(ctx, podnet.Options{StateDir: m.opts.StateDir, CIDR: m.opts.PodCIDR, Logger: m.logger.With("component", "podnet")})
	if err != nil {
		return nil, fmt.Errorf("isolation netns: %w", err)
	}
	m.pods = pods
	closePods := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pods.Close(ctx); err != nil {
			m.logger.Error("removing the pod network", "error", err)
			fmt.Fprintf(m.opts.Out, "skein up: could not remove all of the pod network: %v\n", err)
		}
	}
	fmt.Fprintf(m.opts.Out, "isolation netns: bridge %s, pods in %s, gateway %s\n", pods.Bridge, pods.Subnet, pods.Gateway)
	for _, n := range pods.Notes {
		fmt.Fprintln(m.opts.Out, "isolation netns:", n)
	}
	gwLis, err := net.Listen("tcp", net.JoinHostPort(pods.Gateway.String(), "0"))
	if err != nil {
		closePods()
		return nil, fmt.Errorf("isolation netns: xDS on the bridge: %w", err)
	}
	m.podXDS = gwLis.Addr().String()
	*xdsLis = newMultiListener(*xdsLis, gwLis)
	resolver := m.startNodeResolver(pods.Gateway.String(), suffix)
	return func() {
		if resolver != nil {
			resolver.Shutdown()
		}
		closePods()
	}, nil
}

// startNodeResolver answers pods' DNS on the gateway, port 53, as kube-dns does in a
// cluster: authoritative NXDOMAIN for the cluster domain (the sidecars answer the
// names that exist), everything else forwarded to this machine's resolvers. Pods'
// resolv.conf names it; their sidecars forward what they do not know to it.
func (m *Mesh) startNodeResolver(gateway, suffix string) *dns.Server {
	table := &dns.Table{Forward: true, Timeout: 5 * time.Second, Authoritative: []string{strings.TrimPrefix(suffix, "svc.")}}
	if cfg, err := mdns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		for _, s := range cfg.Servers {
			table.Resolvers = append(table.Resolvers, net.JoinHostPort(s, cfg.Port))
		}
	}
	addr := net.JoinHostPort(gateway, "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		m.logger.Warn("node DNS resolver not started; pods resolve only mesh names", "address", addr, "error", err)
		fmt.Fprintf(m.opts.Out, "isolation netns: no DNS on %s (%v): pods resolve only mesh names\n", addr, err)
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln = nil
	}
	return dns.Serve(pc, ln, &dns.Handler{Table: func() *dns.Table { return table }, Logger: m.logger}, m.logger)
}

// startPod starts a replica as a pod: namespace and capture rules, the sidecar (as the
// proxy uid), then the app.
func (m *Mesh) startPod(ctx context.Context, cfg *model.Mesh, w *model.Workload, index int) (*replicaRun, error) {
	id := fmt.Sprintf("%s-%d.%s", w.Name, index, w.Namespace)
	pod, err := m.pods.AddPod(ctx, id, w.Namespace, cfg.Suffix())
	if err != nil {
		return nil, err
	}
	r := &replicaRun{index: index, client: &http.Client{Timeout: time.Second}, pod: pod, pods: m.pods, adminPort: AdminPort, metricsPort: MetricsPort}
	fail := func(err error) (*replicaRun, error) {
		r.stop()
		return nil, err
	}
	r.proxy = model.Proxy{
		ID:             id,
		Role:           model.RoleSidecar,
		Workload:       w.NamespacedName,
		Replica:        index,
		Labels:         w.Labels,
		ServiceAccount: w.ServiceAccount,
		Capture:        model.CaptureIPTables,
		IP:             pod.IP.String(),
	}
	rules := capture.Defaults().WithOverrides(w.Capture)
	// The sidecar's user: the capture rules exempt its traffic by owner. With separate
	// users every pod's sidecar has a user of its own (no sidecar can read another's
	// credential); otherwise Istio's 1337.
	r.telemetry = cfg.TelemetryFor(w.NamespacedName, w.Labels)
	users := m.usersFor()
	if users.sidecar >= 0 && rules.ProxyUID == capture.DefaultProxyUID && rules.ProxyGID == capture.DefaultProxyGID {
		rules.ProxyUID, rules.ProxyGID = users.sidecar, users.sidecar
	}
	users.sidecar = rules.ProxyUID
	r.users = users
	if err := capture.Apply(ctx, capture.InNetns(pod.Netns), rules); err != nil {
		return fail(fmt.Errorf("capture rules: %w", err))
	}
	if m.separateUsers {
		// The app runs as a user of its own: let it bind any port of its pod, as
		// container runtimes do (the sysctl is per network namespace).
		if err := netns.Do(pod.Netns, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0o644)
		}); err != nil {
			return fail(fmt.Errorf("pod sysctl: %w", err))
		}
	}
	for _, cp := range w.Ports {
		r.podPorts = append(r.podPorts, cp.ContainerPort)
	}
	if len(r.podPorts) > 0 {
		r.port = r.podPorts[0]
	}
	env := []string{
		"SKEIN_WORKLOAD=" + w.Name,
		"SKEIN_NAMESPACE=" + w.Namespace,
		"SKEIN_REPLICA=" + strconv.Itoa(index),
		"SKEIN_SERVICE_ACCOUNT=" + w.ServiceAccount,
		"SKEIN_POD_IP=" + pod.IP.String(),
		"SKEIN_PROXY_ADMIN=" + r.adminAddr(),
		"HOSTNAME=" + fmt.Sprintf("%s-%d", w.Name, index),
	}
	if r.port != 0 {
		env = append(env, "PORT="+strconv.Itoa(r.port))
	}
	for _, cp := range w.Ports {
		if cp.Name != "" {
			env = append(env, "PORT_"+envName(cp.Name)+"="+strconv.Itoa(cp.ContainerPort))
		}
	}
	// Kubernetes' service variables: the VIP and service port, as a pod sees them.
	seen := map[string]bool{}
	for _, s := range cfg.Services {
		if s.Namespace != w.Namespace || s.VIP == "" || len(s.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name) + "_SERVICE_"
		if !seen[s.Name] {
			seen[s.Name] = true
			env = append(env, prefix+"HOST="+s.VIP, prefix+"PORT="+strconv.Itoa(s.Ports[0].Port))
		}
		for _, p := range s.Ports {
			if p.Name != "" {
				env = append(env, prefix+"PORT_"+envName(p.Name)+"="+strconv.Itoa(p.Port))
			}
		}
	}
	// The sidecar's bootstrap credential (readable by the proxy uid) and the app's
	// SPIFFE Workload API socket (a path, so reachable from the pod's namespace).
	if r.identity, err = m.sec.forReplica(ctx, r.proxy, users.app); err != nil {
		return fail(fmt.Errorf("identity: %w", err))
	}
	if err := proxyReadableToken(r.identity, rules.ProxyUID, rules.ProxyGID); err != nil {
		return fail(fmt.Errorf("identity: %w", err))
	}
	env = append(env, "SPIFFE_ENDPOINT_SOCKET=unix://"+r.identity.socket)
	userEnv := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		userEnv[k] = v
	}
	for _, e := range w.Env {
		v := supervisor.ExpandArgs([]string{e.Value}, userEnv)[0]
		userEnv[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	r.env = env

	nodeJSON, err := json.Marshal(r.proxy)
	if err != nil {
		return fail(err)
	}
	logDir := filepath.Join(m.opts.StateDir, "logs")
	sidecarLog, err := openLog(filepath.Join(logDir, r.proxy.ID+".proxy.log"))
	if err != nil {
		return fail(err)
	}
	uid, gid := strconv.Itoa(rules.ProxyUID), strconv.Itoa(rules.ProxyGID)
	proxyCmd := m.sidecarCommand(r, string(nodeJSON), logDir)
	// The sidecar runs as the proxy uid, which cannot open files in the state dir:
	// its access log is opened here and inherited as descriptor 3.
	extra, err := r.inheritAccessLog(proxyCmd)
	if err != nil {
		return fail(err)
	}
	r.sidecar, err = supervisor.Start(ctx, supervisor.Spec{
		Name:       r.proxy.ID + "/proxy",
		Command:    append([]string{m.opts.Self, "netns-exec", "--netns", pod.Netns, "--uid", uid, "--gid", gid, "--"}, proxyCmd...),
		Env:        os.Environ(),
		Stdout:     sidecarLog,
		Stderr:     sidecarLog,
		ExtraFiles: extra,
	}, m.logger)
	if err != nil {
		return fail(fmt.Errorf("sidecar: %w", err))
	}
	r.waitReady(ctx, 10*time.Second)
	if len(w.Command) == 0 {
		return r, nil
	}
	appLog, err := openLog(filepath.Join(logDir, r.proxy.ID+".log"))
	if err != nil {
		return fail(err)
	}
	cmd := supervisor.ResolveCommand(supervisor.ExpandArgs(w.Command, userEnv), m.opts.Self)
	r.app, err = supervisor.Start(ctx, supervisor.Spec{
		Name:    r.proxy.ID,
		Command: asUser(m.opts.Self, pod.Netns, users.app, cmd),
		Env:     append(os.Environ(), env...),
		Stdout:  appLog,
		Stderr:  appLog,
	}, m.logger)
	if err != nil {
		return fail(fmt.Errorf("app %q: %w", strings.Join(cmd, " "), err))
	}
	return r, nil
}

// probePod: the app accepts connections on every container port, from inside the pod
// (from outside, the capture rules would hand the connection to the sidecar).
func (r *replicaRun) probePod(ctx context.Context) bool {
	for _, p := range r.podPorts {
		c, err := netns.Dial(ctx, r.pod.Netns, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// multiListener accepts from several listeners (the control plane on loopback for
// tools, and on the bridge for pods).
type multiListener struct {
	lns   []net.Listener
	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
}

func newMultiListener(lns ...net.Listener) *multiListener {
	m := &multiListener{lns: lns, conns: make(chan net.Conn), errs: make(chan error, len(lns)), done: make(chan struct{})}
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					m.errs <- err
					return
				}
				select {
				case m.conns <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case err := <-m.errs:
		m.Close()
		return nil, err
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			ln.Close()
		}
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }

// proxyReadableToken copies a pod sidecar's bootstrap credential where the proxy uid
// can read it (the state dir is not reachable by that uid): a 0700 folder of its own
// under the system temp dir, removed with the identity.
func proxyReadableToken(id *replicaIdentity, uid, gid int) error {
	raw, err := os.ReadFile(id.tokenFile)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skein-token-")
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "token")
	err = os.WriteFile(file, raw, 0o600)
	if err == nil {
		err = os.Chown(file, uid, gid)
	}
	if err == nil {
		err = os.Chown(dir, uid, gid)
	}
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	release := id.release
	id.release = func() { release(); os.RemoveAll(dir) }
	id.tokenFile = file
	return nil
}
