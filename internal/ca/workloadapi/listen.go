package workloadapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// maxSocketPath is the portable bound on a Unix socket path (sun_path is 108 bytes on
// Linux, 104 on BSDs, including the terminating NUL).
const maxSocketPath = 100

// Listen creates the Unix socket at path for one workload: its directory 0700, the
// socket 0600, a stale socket from an earlier run replaced. Connections from another
// user are refused where the OS reports peer credentials (Linux: SO_PEERCRED).
func Listen(path string) (net.Listener, error) {
	return ListenFor(path, -1, -1)
}

// ListenFor is Listen for a workload running as another user (uid, gid >= 0): the
// directory and socket belong to that user, and only it (and this process's user,
// the runtime) may connect. Other workloads, under their own users, cannot.
func ListenFor(path string, uid, gid int) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("workloadapi: socket path %q is longer than %d bytes", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	l := &sameUserListener{Listener: ln, uid: os.Getuid(), also: -1}
	if uid >= 0 {
		for _, p := range []string{filepath.Dir(path), path} {
			if err := os.Chown(p, uid, gid); err != nil {
				ln.Close()
				return nil, fmt.Errorf("workloadapi: %w", err)
			}
		}
		l.also = uid
	}
	return l, nil
}

// sameUserListener drops connections whose peer runs as another user than uid (or
// also, when >= 0).
type sameUserListener struct {
	net.Listener
	uid, also int
}

func (l *sameUserListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uid, ok := peerUID(c); ok && uid != l.uid && uid != l.also {
			c.Close()
			continue
		}
		return c, nil
	}
}
