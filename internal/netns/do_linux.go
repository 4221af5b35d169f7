package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has joined the named namespace. Sockets fn creates
// belong to the namespace (and stay there afterwards), and processes fn starts with
// os/exec are born in it. Goroutines fn starts run elsewhere, outside the namespace.
// The thread joins its original namespace again before it is unlocked. It must not be
// thrown away instead (by exiting while locked): a child started with a parent-death
// signal by any goroutine that ran on that thread before would be killed with it.
// Only if going back fails is the thread left locked, to die with the goroutine.
func Do(name string, fn func() error) error {
	if err := checkName(name); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(RunDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
