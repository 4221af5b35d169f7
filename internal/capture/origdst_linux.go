package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const ip6tSOOriginalDst = 80

// OriginalDst returns where a connection was going before a REDIRECT rule sent it to
// this socket (getsockopt SO_ORIGINAL_DST, from conntrack), and whether it was
// redirected at all: a connection made straight to the listener has its own local
// address as original destination.
func OriginalDst(c *net.TCPConn) (dst netip.AddrPort, redirected bool, err error) {
	tcpLocal, _ := c.LocalAddr().(*net.TCPAddr)
	if tcpLocal == nil {
		return netip.AddrPort{}, false, errors.New("original destination: no local address")
	}
	local := netip.AddrPortFrom(tcpLocal.AddrPort().Addr().Unmap(), tcpLocal.AddrPort().Port())
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	v4 := local.Addr().Is4()
	var sysErr error
	err = raw.Control(func(fd uintptr) {
		if v4 {
			var sa unix.RawSockaddrInet4
			size := uint32(unsafe.Sizeof(sa))
			sysErr = getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &size)
			dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
			return
		}
		var sa unix.RawSockaddrInet6
		size := uint32(unsafe.Sizeof(sa))
		sysErr = getsockopt(fd, unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), &size)
		dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
	})
	if err == nil {
		err = sysErr
	}
	if err != nil {
		// ENOENT: no conntrack entry (e.g. conntrack not loaded); the connection was
		// not NATed, so its local address is where it was going.
		if errors.Is(err, unix.ENOENT) {
			return local, false, nil
		}
		return netip.AddrPort{}, false, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
	}
	return dst, dst != local, nil
}

func getsockopt(fd uintptr, level, name int, p unsafe.Pointer, size *uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(size)), 0)
	if e != 0 {
		return syscall.Errno(e)
	}
	return nil
}

func ntohs(p uint16) uint16 { return p>>8 | p<<8 }
