package supervisor

import "syscall"

// sysProcAttr puts the child in its own process group, so Stop can signal everything it
// spawned, and asks the kernel to SIGKILL it if this process dies without stopping it
// (e.g. `skein up` is SIGKILLed). Pdeathsig fires when the OS thread that forked the
// child exits; the Go runtime does not retire threads unless a goroutine exits while
// locked to one, which this package never does. Grandchildren do not get Pdeathsig:
// only a Stop (group kill) reaches them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
