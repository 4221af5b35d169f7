// Package statedir finds and records a running `skein up` instance: its folder holds
// up.json (pid and addresses) so that status, exec and down can reach it.
package statedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// EnvVar overrides the default state dir.
const EnvVar = "SKEIN_STATE_DIR"

// Default returns $SKEIN_STATE_DIR, else ~/.skein, else /tmp/skein-<uid>.
func Default() string {
	if d := os.Getenv(EnvVar); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".skein")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("skein-%d", os.Getuid()))
}

// Instance is the record of a running `skein up`.
type Instance struct {
	Pid       int       `json:"pid"`
	API       string    `json:"api"`
	XDS       string    `json:"xds"`
	ConfigDir string    `json:"configDir"`
	Isolation string    `json:"isolation"`
	StartedAt time.Time `json:"startedAt"`
}

// ErrNotRunning means no live instance is recorded in the state dir.
var ErrNotRunning = errors.New("no skein up is running for this state dir")

func recordPath(dir string) string { return filepath.Join(dir, "up.json") }

// Read returns the live instance recorded in dir, or ErrNotRunning.
func Read(dir string) (Instance, error) {
	var in Instance
	b, err := os.ReadFile(recordPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return in, fmt.Errorf("%w (state dir %s)", ErrNotRunning, dir)
	}
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("%s: %w", recordPath(dir), err)
	}
	if !alive(in.Pid) {
		return in, fmt.Errorf("%w (state dir %s; pid %d is gone)", ErrNotRunning, dir, in.Pid)
	}
	return in, nil
}

// Claim records in as the running instance of dir; it fails if another live instance
// holds the dir. A record left by a killed run is replaced.
func Claim(dir string, in Instance) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if old, err := Read(dir); err == nil && old.Pid != in.Pid {
		return fmt.Errorf("skein up (pid %d) already runs with state dir %s: use `skein down --state-dir %s` or another --state-dir", old.Pid, dir, dir)
	}
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, recordPath(dir))
}

// Release removes the record if it still belongs to pid.
func Release(dir string, pid int) {
	b, err := os.ReadFile(recordPath(dir))
	if err != nil {
		return
	}
	var in Instance
	if json.Unmarshal(b, &in) == nil && in.Pid == pid {
		_ = os.Remove(recordPath(dir))
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
