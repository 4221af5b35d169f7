//go:build !linux

package capture

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's SO_ORIGINAL_DST; elsewhere a connection was never
// redirected and its local address is its destination.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, bool, error) {
	a, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false, errors.New("original destination: no local address")
	}
	return a.AddrPort(), false, nil
}
