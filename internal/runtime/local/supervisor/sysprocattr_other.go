//go:build unix && !linux

package supervisor

import "syscall"

// sysProcAttr puts the child in its own process group so Stop can signal everything it
// spawned. There is no Pdeathsig outside Linux.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
