//go:build !linux

package netns

import (
	"errors"
	"fmt"
	"runtime"
)

var errNotLinux = fmt.Errorf("network namespaces need Linux, this is %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Do needs Linux.
func Do(string, func() error) error { return errNotLinux }

// ExecOptions say how Exec runs a program.
type ExecOptions struct {
	Netns    string
	UID, GID int
	Argv     []string
	Env      []string
}

// Exec needs Linux.
func Exec(ExecOptions) error { return errNotLinux }
