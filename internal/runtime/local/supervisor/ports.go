package supervisor

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports handed out by this process, so two replicas never get the same one even after
// the first has not bound it yet.
var (
	allocatedMu sync.Mutex
	allocated   = map[int]bool{}
)

// AllocatePorts returns n distinct TCP ports that are free on 127.0.0.1 now and that this
// process has not handed out before. They are chosen below the kernel's ephemeral range:
// a port in that range can be taken at any moment by some outgoing connection (a proxy's
// upstream dial, a test client), between choosing it and the workload binding it. Below
// the range only an explicit bind can take it. All n listeners are held open together
// while choosing, then closed for the caller to bind.
func AllocatePorts(n int) ([]int, error) {
	allocatedMu.Lock()
	defer allocatedMu.Unlock()
	low, high := belowEphemeral()
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n && tries < 50*n+1000; tries++ {
		p := low + rand.IntN(high-low)
		if allocated[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("allocating %d ports: only %d free in %d-%d", n, len(ports), low, high-1)
	}
	for _, p := range ports {
		allocated[p] = true
	}
	return ports, nil
}

// belowEphemeral returns [low, high): a port range under the kernel's
// ip_local_port_range (read from /proc; Linux's default 32768 when unreadable).
func belowEphemeral() (int, int) {
	high := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 1 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				high = v
			}
		}
	}
	low := 10000
	if high-low < 4096 {
		low = 1024
	}
	return low, high
}
