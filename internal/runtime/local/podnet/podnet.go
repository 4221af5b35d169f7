// Package podnet is the pod network of `skein up --isolation netns`: a Linux bridge
// owned by one skein instance, and for every workload replica a "pod": a named network
// namespace with loopback up, a veth to the bridge, an address from the instance's pod
// subnet, a default route via the bridge and its own resolv.conf. Setup also allows
// the bridge through the host firewall (FORWARD/INPUT, and MASQUERADE for traffic that
// leaves the machine).
//
// Every name carries an instance id derived from the state dir, so two instances never
// clash: bridge skein-<id>, namespaces skein-<id>-<pod>, host veth ends skv<id><hash>,
// iptables chains SKEIN-<id>. What is created is recorded in <state dir>/netns.json
// before it is created; Setup first removes whatever a record (and those name
// prefixes) says a previous, killed instance left behind.
package podnet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"skein.dev/skein/internal/netns"
)

// DefaultCIDR is where pod subnets come from: inside 100.64.0.0/10, the shared address
// space of RFC 6598 (carrier-grade NAT), which home and office LANs (RFC 1918: 10/8,
// 172.16/12, 192.168/16), Docker (172.17+/16) and Kubernetes defaults (10.x) do not
// use. 100.64.0.0/16 (EKS custom pod networking, the first pick of other tools) and
// 100.100.0.0/16 (Tailscale's and Alibaba Cloud's DNS) are avoided. Each instance takes
// a /24 of it, chosen from the state dir's hash and skipping subnets already routed.
var DefaultCIDR = netip.MustParsePrefix("100.65.0.0/16")

// Options configure Setup.
type Options struct {
	// StateDir identifies the instance and holds the record.
	StateDir string
	// CIDR is the pod CIDR: a /24 or shorter prefix is split into /24s (one per
	// instance); a longer one is used whole. DefaultCIDR when invalid.
	CIDR   netip.Prefix
	Logger *slog.Logger
}

// Network is an instance's bridge and its pods. Its methods are safe for concurrent use.
type Network struct {
	ID      string
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Notes are one-line remarks for the user (e.g. no IP forwarding).
	Notes []string

	log      *slog.Logger
	stateDir string

	mu   sync.Mutex
	rec  Record
	used map[netip.Addr]bool
}

// Pod is one replica's network namespace.
type Pod struct {
	Netns    string
	HostVeth string
	IP       netip.Addr
}

// Record is <state dir>/netns.json: what an instance created, written before it is
// created, so a later start can remove it after a SIGKILL.
type Record struct {
	ID       string `json:"id"`
	Bridge   string `json:"bridge,omitempty"`
	Subnet   string `json:"subnet,omitempty"`
	HostRule bool   `json:"hostRules,omitempty"`
	Pods     []Pod  `json:"pods,omitempty"`
}

// RecordFile is the record's name in the state dir.
const RecordFile = "netns.json"

// InstanceID derives the id of the instance using stateDir.
func InstanceID(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:3])
}

// Names of an instance's objects.
func bridgeName(id string) string    { return "skein-" + id }
func chainName(id string) string     { return "SKEIN-" + id }
func netnsPrefix(id string) string   { return "skein-" + id + "-" }
func vethPrefix(id string) string    { return "skv" + id }
func podNetns(id, pod string) string { return netnsPrefix(id) + pod }
func hostVeth(id, netns string) string {
	sum := sha256.Sum256([]byte(netns))
	return vethPrefix(id) + hex.EncodeToString(sum[:3]) // 3+6+6 = 15, the kernel's limit
}

// Setup removes what a previous instance of this state dir left, then creates the
// bridge and host rules.
func Setup(ctx context.Context, o Options) (*Network, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !o.CIDR.IsValid() {
		o.CIDR = DefaultCIDR
	}
	if !o.CIDR.Addr().Is4() {
		return nil, fmt.Errorf("pod CIDR %s: only IPv4 is supported", o.CIDR)
	}
	id := InstanceID(o.StateDir)
	if err := Recover(ctx, o.StateDir, o.Logger); err != nil {
		return nil, fmt.Errorf("removing what a previous run left: %w", err)
	}
	subnet, err := chooseSubnet(o.CIDR.Masked(), id)
	if err != nil {
		return nil, err
	}
	n := &Network{
		ID: id, Bridge: bridgeName(id), Subnet: subnet, Gateway: subnet.Addr().Next(),
		log: o.Logger, stateDir: o.StateDir, used: map[netip.Addr]bool{},
		rec: Record{ID: id, Bridge: bridgeName(id), Subnet: subnet.String(), HostRule: true},
	}
	if err := n.save(); err != nil {
		return nil, err
	}
	if err := n.createBridge(ctx); err != nil {
		n.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := n.addHostRules(ctx); err != nil {
		n.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "1" {
		n.Notes = append(n.Notes, "net.ipv4.ip_forward is 0: pods reach this machine and each other, not the outside (sysctl -w net.ipv4.ip_forward=1 to allow)")
	}
	return n, nil
}

func (n *Network) createBridge(ctx context.Context) error {
	gw := netip.PrefixFrom(n.Gateway, n.Subnet.Bits()).String()
	batch := strings.Join([]string{
		"link add " + n.Bridge + " type bridge",
		"addr add " + gw + " dev " + n.Bridge,
		"link set " + n.Bridge + " up",
	}, "\n")
	if _, err := netns.RunStdin(ctx, batch, "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("creating bridge %s: %w", n.Bridge, err)
	}
	return nil
}

// addHostRules lets the bridge's traffic through the host firewall, whatever its
// policy (Docker sets FORWARD to DROP), and masquerades pods' traffic that leaves the
// machine.
func (n *Network) addHostRules(ctx context.Context) error {
	chain := chainName(n.ID)
	cmds := [][]string{
		{"-t", "filter", "-N", chain},
		{"-t", "filter", "-A", chain, "-i", n.Bridge, "-j", "ACCEPT"},
		{"-t", "filter", "-A", chain, "-o", n.Bridge, "-j", "ACCEPT"},
		{"-t", "filter", "-I", "FORWARD", "-j", chain},
		{"-t", "filter", "-I", "INPUT", "-i", n.Bridge, "-j", chain},
		{"-t", "nat", "-N", chain},
		{"-t", "nat", "-A", chain, "-s", n.Subnet.String(), "!", "-o", n.Bridge, "-j", "MASQUERADE"},
		{"-t", "nat", "-I", "POSTROUTING", "-j", chain},
	}
	for _, c := range cmds {
		if _, err := netns.Run(ctx, append([]string{"iptables", "-w", "5"}, c...)...); err != nil {
			return fmt.Errorf("host firewall rules: %w", err)
		}
	}
	return nil
}

func removeHostRules(ctx context.Context, id string) {
	chain := chainName(id)
	bridge := bridgeName(id)
	for _, c := range [][]string{
		{"-t", "filter", "-D", "FORWARD", "-j", chain},
		{"-t", "filter", "-D", "INPUT", "-i", bridge, "-j", chain},
		{"-t", "filter", "-F", chain},
		{"-t", "filter", "-X", chain},
		{"-t", "nat", "-D", "POSTROUTING", "-j", chain},
		{"-t", "nat", "-F", chain},
		{"-t", "nat", "-X", chain},
	} {
		_, _ = netns.Run(ctx, append([]string{"iptables", "-w", "5"}, c...)...)
	}
}

// AddPod creates a pod: namespace name skein-<id>-<name>, where name is unique in
// the instance (the proxy id). k8sNamespace gives the DNS search path.
func (n *Network) AddPod(ctx context.Context, name, k8sNamespace, domainSuffix string) (*Pod, error) {
	n.mu.Lock()
	ip, ok := n.allocate()
	if !ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("pod subnet %s is full", n.Subnet)
	}
	ns := podNetns(n.ID, name)
	p := &Pod{Netns: ns, HostVeth: hostVeth(n.ID, ns), IP: ip}
	n.rec.Pods = append(n.rec.Pods, *p)
	err := n.saveLocked()
	n.mu.Unlock()
	if err != nil {
		n.RemovePod(context.WithoutCancel(ctx), p)
		return nil, err
	}
	if err := n.createPod(ctx, p, k8sNamespace, domainSuffix); err != nil {
		n.RemovePod(context.WithoutCancel(ctx), p)
		return nil, fmt.Errorf("pod %s: %w", ns, err)
	}
	return p, nil
}

func (n *Network) createPod(ctx context.Context, p *Pod, k8sNamespace, suffix string) error {
	if err := netns.Add(ctx, p.Netns); err != nil {
		return err
	}
	host := strings.Join([]string{
		"link add " + p.HostVeth + " type veth peer name eth0 netns " + p.Netns,
		"link set " + p.HostVeth + " master " + n.Bridge + " up",
	}, "\n")
	if _, err := netns.RunStdin(ctx, host, "ip", "-batch", "-"); err != nil {
		return err
	}
	pod := strings.Join([]string{
		"link set lo up",
		"addr add " + netip.PrefixFrom(p.IP, n.Subnet.Bits()).String() + " dev eth0",
		"link set eth0 up",
		"route add default via " + n.Gateway.String(),
	}, "\n")
	if _, err := netns.RunStdin(ctx, pod, "ip", "-n", p.Netns, "-batch", "-"); err != nil {
		return err
	}
	// As a Kubernetes pod's: the node resolver (the gateway, see local's DNS forwarder),
	// the namespace's search path, ndots:5. The sidecar's DNS proxy answers first: the
	// capture rules send the app's port-53 traffic to it.
	resolv := fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		n.Gateway, k8sNamespace, trimSvc(suffix), trimSvc(suffix), trimSvc(suffix))
	return netns.WriteEtc(p.Netns, "resolv.conf", resolv)
}

// trimSvc turns "svc.cluster.local" into "cluster.local".
func trimSvc(suffix string) string { return strings.TrimPrefix(suffix, "svc.") }

// RemovePod deletes a pod's namespace and veth; call it after its processes stopped.
func (n *Network) RemovePod(ctx context.Context, p *Pod) error {
	err := removePod(ctx, *p)
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.used, p.IP)
	for i, q := range n.rec.Pods {
		if q.Netns == p.Netns {
			n.rec.Pods = append(n.rec.Pods[:i], n.rec.Pods[i+1:]...)
			break
		}
	}
	return errors.Join(err, n.saveLocked())
}

func removePod(ctx context.Context, p Pod) error {
	if _, err := net.InterfaceByName(p.HostVeth); err == nil {
		_, _ = netns.Run(ctx, "ip", "link", "delete", p.HostVeth)
	}
	return netns.Delete(ctx, p.Netns)
}

// Close removes every pod, the host rules, the bridge and the record.
func (n *Network) Close(ctx context.Context) error {
	n.mu.Lock()
	pods := append([]Pod(nil), n.rec.Pods...)
	n.mu.Unlock()
	var errs []error
	for i := range pods {
		errs = append(errs, n.RemovePod(ctx, &pods[i]))
	}
	removeHostRules(ctx, n.ID)
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if _, err := netns.Run(ctx, "ip", "link", "delete", n.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(filepath.Join(n.stateDir, RecordFile))
}

// Recover removes what the record in stateDir lists and anything else named with the
// instance's id (namespaces, veths, bridge, host chains), then deletes the record.
func Recover(ctx context.Context, stateDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := InstanceID(stateDir)
	path := filepath.Join(stateDir, RecordFile)
	var rec Record
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &rec); err != nil {
			log.Warn("unreadable netns record; sweeping by name", "file", path, "error", err)
		}
	}
	found := len(rec.Pods) > 0 || rec.Bridge != ""
	var errs []error
	for _, p := range rec.Pods {
		errs = append(errs, removePod(ctx, p))
	}
	names, _ := netns.List()
	for _, ns := range names {
		if strings.HasPrefix(ns, netnsPrefix(id)) {
			found = true
			errs = append(errs, netns.Delete(ctx, ns))
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, vethPrefix(id)) || i.Name == bridgeName(id) {
			found = true
			if _, err := netns.Run(ctx, "ip", "link", "delete", i.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if hostRulesPresent(ctx, id) {
		found = true
		removeHostRules(ctx, id)
	}
	if found {
		log.Info("removed network namespaces, links and rules a previous run left", "instance", id)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func hostRulesPresent(ctx context.Context, id string) bool {
	for _, table := range []string{"filter", "nat"} {
		if _, err := netns.Run(ctx, "iptables", "-w", "5", "-t", table, "-S", chainName(id)); err == nil {
			return true
		}
	}
	return false
}

// Leftovers lists what exists of an instance's objects (tests).
func Leftovers(ctx context.Context, stateDir string) []string {
	id := InstanceID(stateDir)
	var out []string
	names, _ := netns.List()
	for _, ns := range names {
		if strings.HasPrefix(ns, netnsPrefix(id)) {
			out = append(out, "netns "+ns)
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, vethPrefix(id)) || i.Name == bridgeName(id) {
			out = append(out, "link "+i.Name)
		}
	}
	if hostRulesPresent(ctx, id) {
		out = append(out, "iptables chain "+chainName(id))
	}
	if _, err := os.Stat(filepath.Join(stateDir, RecordFile)); err == nil {
		out = append(out, "record "+RecordFile)
	}
	if entries, _ := os.ReadDir(netns.EtcDir); len(entries) > 0 {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), netnsPrefix(id)) {
				out = append(out, "etc "+filepath.Join(netns.EtcDir, e.Name()))
			}
		}
	}
	return out
}

// allocate takes the lowest free host address after the gateway.
func (n *Network) allocate() (netip.Addr, bool) {
	last := lastAddr(n.Subnet)
	for a := n.Gateway.Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if !n.used[a] {
			n.used[a] = true
			return a, true
		}
	}
	return netip.Addr{}, false
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func (n *Network) save() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.saveLocked()
}

func (n *Network) saveLocked() error {
	b, err := json.MarshalIndent(n.rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(n.stateDir, RecordFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// chooseSubnet picks the instance's /24 in cidr: the one its id hashes to, or the next
// one no existing route overlaps.
func chooseSubnet(cidr netip.Prefix, id string) (netip.Prefix, error) {
	routes, err := hostRoutes()
	if err != nil {
		return netip.Prefix{}, err
	}
	overlaps := func(p netip.Prefix) (netip.Prefix, bool) {
		for _, r := range routes {
			if r.Bits() > 0 && r.Overlaps(p) {
				return r, true
			}
		}
		return netip.Prefix{}, false
	}
	if cidr.Bits() >= 24 {
		if cidr.Bits() > 29 {
			return netip.Prefix{}, fmt.Errorf("pod CIDR %s is too small (want /29 or larger)", cidr)
		}
		if r, ok := overlaps(cidr); ok {
			return netip.Prefix{}, fmt.Errorf("pod CIDR %s overlaps the route to %s on this machine (another skein up, or a LAN): choose another with --pod-cidr", cidr, r)
		}
		return cidr, nil
	}
	count := uint32(1) << (24 - cidr.Bits())
	seed, _ := strconv.ParseUint(id, 16, 32)
	base := binary.BigEndian.Uint32(cidr.Addr().AsSlice())
	for i := range count {
		k := (uint32(seed) + i) % count
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+k<<8)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		if _, ok := overlaps(p); !ok {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("every /24 of pod CIDR %s is already routed on this machine: choose another with --pod-cidr", cidr)
}

// hostRoutes reads the main routing table's IPv4 destinations (/proc/net/route).
func hostRoutes() ([]netip.Prefix, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(fields[1], 16, 32)
		mask, err2 := strconv.ParseUint(fields[7], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		var d, m [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		bits, _ := net.IPMask(m[:]).Size()
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), bits))
	}
	return out, sc.Err()
}

// WaitGone polls until none of the instance's objects exist (tests).
func WaitGone(ctx context.Context, stateDir string, limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	for {
		left := Leftovers(ctx, stateDir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}
