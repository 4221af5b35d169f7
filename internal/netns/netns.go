// Package netns works with named Linux network namespaces, the kind `ip netns` makes:
// a bind mount under /run/netns/<name> keeps the namespace alive without a process,
// and /etc/netns/<name>/ holds files (resolv.conf) that replace /etc's for programs run
// in it. Namespaces are created and deleted with the `ip` command, so what skein makes
// is exactly what `ip netns list` and `ip netns exec` see.
//
// Go schedules goroutines on many OS threads and a network namespace belongs to a
// thread, so code that must run inside a namespace goes through Do: a goroutine locked
// to a fresh thread that joins the namespace and is thrown away afterwards. Programs
// are started inside a namespace by re-executing this binary as `skein netns-exec`
// (Exec), which joins the namespaces and then execs the target.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// RunDir holds the bind mounts of named namespaces; EtcDir the per-namespace files.
const (
	RunDir = "/run/netns"
	EtcDir = "/etc/netns"
)

// ErrNotFound is returned for a namespace that does not exist.
var ErrNotFound = errors.New("network namespace not found")

// CommandError is a failed `ip` (or other) command, with its output.
type CommandError struct {
	Args   []string
	Output string
	Err    error
}

func (e *CommandError) Error() string {
	out := strings.TrimSpace(e.Output)
	if out == "" {
		return fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.Args, " "), e.Err, out)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Run runs a command and returns its combined output, or a *CommandError.
func Run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), &CommandError{Args: args, Output: out.String(), Err: err}
	}
	return out.String(), nil
}

// RunStdin is Run with stdin.
func RunStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), &CommandError{Args: args, Output: out.String(), Err: err}
	}
	return out.String(), nil
}

// Add creates a named namespace.
func Add(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := Run(ctx, "ip", "netns", "add", name)
	return err
}

// Delete removes a named namespace and its /etc/netns folder. A namespace that does not
// exist is not an error. The namespace itself lives on until its last process exits;
// its veth ends are deleted with it.
func Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	var errs []error
	if Exists(name) {
		if _, err := Run(ctx, "ip", "netns", "delete", name); err != nil && Exists(name) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(EtcDir, name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(RunDir, name))
	return err == nil
}

// List returns the named namespaces, sorted.
func List() ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// WriteEtc writes /etc/netns/<name>/<file>, which Exec (and `ip netns exec`) bind-mount
// over /etc/<file> for programs run in the namespace.
func WriteEtc(name, file, content string) error {
	dir := filepath.Join(EtcDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644)
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	return nil
}

// Dial connects from inside the named namespace.
func Dial(ctx context.Context, name, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := Do(name, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Listen listens inside the named namespace.
func Listen(name, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := Do(name, func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside the named namespace.
func ListenPacket(name, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(name, func() error {
		var err error
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}
