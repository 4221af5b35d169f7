package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecOptions say how Exec runs a program.
type ExecOptions struct {
	// Netns names the namespace to join; empty stays in this one (then Exec only
	// changes the user: isolation none's separate users).
	Netns string
	// UID and GID, when >= 0, are the ids the program runs as (supplementary groups
	// are dropped); -1 keeps the caller's.
	UID, GID int
	// Argv is the program (looked up in PATH) and its arguments.
	Argv []string
	// Env is the environment; nil means this process's.
	Env []string
}

// Exec replaces this process with Argv running inside a named namespace, as `ip netns
// exec` does: it joins the network namespace, enters a private mount namespace where
// /sys shows the namespace's interfaces and every file in /etc/netns/<name>/ is bind
// mounted over its /etc counterpart (resolv.conf: the pod's DNS), then drops to
// UID/GID and execs. It returns only on failure. It is the body of `skein netns-exec`,
// the re-exec helper `skein up` starts pod processes with; call it from main's goroutine
// before starting others.
//
// A dropped-privilege program is executed through a descriptor opened while still
// root, so its file need not be reachable by the new uid (e.g. a binary in a 0700
// folder). The program gets a parent-death signal (SIGKILL), so it dies with the
// process that started the helper, as `skein up`'s children must.
func Exec(o ExecOptions) error {
	if len(o.Argv) == 0 {
		return errors.New("netns exec: no command")
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	runtime.LockOSThread() // namespaces are per thread; exec from this one
	ppid := os.Getppid()
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		return err
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	// No namespace: only the change of user (isolation none's separate users).
	if o.Netns != "" {
		if err := enter(o.Netns); err != nil {
			return err
		}
	}
	execPath := path
	if o.UID >= 0 || o.GID >= 0 {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		execPath = fmt.Sprintf("/proc/self/fd/%d", fd)
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if o.GID >= 0 {
			if err := syscall.Setgid(o.GID); err != nil {
				return fmt.Errorf("setgid %d: %w", o.GID, err)
			}
		}
		if o.UID >= 0 {
			if err := syscall.Setuid(o.UID); err != nil {
				return fmt.Errorf("setuid %d: %w", o.UID, err)
			}
		}
		// Changing ids made /proc/self root-owned (the fd above is read through it).
		_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	}
	// The parent-death signal is a property of a thread: the one the parent set it on
	// may not be this one (which becomes the process at exec), and changing ids
	// clears it. Set it here, then make sure the parent did not die meanwhile.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_PDEATHSIG: %w", err)
	}
	if os.Getppid() != ppid {
		return errors.New("parent exited while starting")
	}
	argv := append([]string{o.Argv[0]}, o.Argv[1:]...)
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(execPath, argv, o.Env))
}

// enter joins the named network namespace and a private mount namespace with the
// pod's /etc files bound in.
func enter(name string) error {
	f, err := os.Open(filepath.Join(RunDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return err
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	f.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	// Mounts made below must not propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making / a slave mount: %w", err)
	}
	// A sysfs mounted from inside the namespace lists its interfaces (best effort,
	// as ip netns exec: some containers forbid it).
	if unix.Unmount("/sys", unix.MNT_DETACH) == nil {
		_ = unix.Mount(name, "/sys", "sysfs", 0, "")
	}
	return bindEtc(name)
}

// bindEtc bind-mounts /etc/netns/<name>/<file> over /etc/<file> for every file there.
func bindEtc(name string) error {
	dir := filepath.Join(EtcDir, name)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		src, dst := filepath.Join(dir, e.Name()), filepath.Join("/etc", e.Name())
		if _, err := os.Stat(dst); err != nil {
			continue // as ip netns exec: only existing files are replaced
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", src, dst, err)
		}
	}
	return nil
}
