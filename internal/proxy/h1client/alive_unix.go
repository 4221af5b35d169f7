//go:build unix

package h1client

import (
	"errors"
	"syscall"
)

// alive peeks at an idle connection without blocking: a connection its peer closed
// reads EOF (or an error). Pending bytes on a plaintext connection are an answer to
// nothing, so it is not used either; on TLS they may be a session ticket or key
// update, which the next read handles.
func (c *conn) alive() bool {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		case err != nil || n == 0:
			alive = false
		case c.tls == nil:
			alive = false
		}
		return true
	})
	return alive && err == nil
}
