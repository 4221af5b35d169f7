package supervisor

import (
	"fmt"
	"net"
)

// AllocatePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago.
// It holds all n listeners open together (so the ports differ), then closes them.
// Between that close and the caller's own listen another process may take a port. The
// race is small (Linux hands out ephemeral ports in a spread-out sequence, so a just
// freed one is rarely picked again soon), and a process that loses it fails to bind
// and says "address already in use": allocate again then.
func AllocatePorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("allocating %d ports: %w", n, err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
