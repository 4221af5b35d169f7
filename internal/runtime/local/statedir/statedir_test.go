package statedir

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestClaimReadRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Read(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Read of an empty dir = %v, want ErrNotRunning", err)
	}
	me := Instance{Pid: os.Getpid(), API: "127.0.0.1:1", StartedAt: time.Now()}
	if err := Claim(dir, me); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || got.API != me.API {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "up.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("up.json mode %v, want 0600", st.Mode().Perm())
	}
	// Another live process may not take the dir.
	other := me
	other.Pid = os.Getppid()
	if err := Claim(dir, other); err == nil {
		t.Error("a second live instance claimed the same state dir")
	}
	Release(dir, me.Pid)
	if _, err := Read(dir); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after Release: %v, want ErrNotRunning", err)
	}
}

func TestStaleRecordIsReplaced(t *testing.T) {
	dir := t.TempDir()
	// A pid that is certainly gone: a process that already exited.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no `true` binary:", err)
	}
	if err := Claim(dir, Instance{Pid: cmd.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("record of a dead pid read as running: %v", err)
	}
	if err := Claim(dir, Instance{Pid: os.Getpid()}); err != nil {
		t.Fatalf("a killed run's record must not block a new start: %v", err)
	}
}
