package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// syncBuffer is a bytes.Buffer safe to write from the output copier and read in tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid names a live (not zombie) process. Reparented zombies
// may not be reaped quickly in a container whose init does not reap.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// firstLinePid reads a pid printed by the child as its first line of output.
func firstLinePid(t *testing.T, out *syncBuffer) int {
	t.Helper()
	var pid int
	eventually(t, "the child's pid", func() bool {
		line, _, ok := strings.Cut(out.String(), "\n")
		if !ok {
			return false
		}
		n, err := strconv.Atoi(strings.TrimSpace(line))
		pid = n
		return err == nil
	})
	return pid
}

func TestRunAndStop(t *testing.T) {
	var out syncBuffer
	p := start(t, Spec{
		Name:    "hello",
		Command: []string{"/bin/sh", "-c", `echo "hello $GREETING"; exec sleep 60`},
		Env:     []string{"GREETING=world"},
		Stdout:  &out,
	})
	eventually(t, "output", func() bool { return out.String() == "hello world\n" })
	if p.State() != StateRunning || p.Pid() == 0 {
		t.Errorf("state %s pid %d, want running with a pid", p.State(), p.Pid())
	}
	pid := p.Pid()
	p.Stop(2 * time.Second)
	want := Status{State: StateStopped, LastExit: "signal: terminated"}
	got := p.Status()
	got.StartedAt = time.Time{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status after Stop (-want +got):\n%s", diff)
	}
	if alive(pid) {
		t.Errorf("pid %d still alive after Stop", pid)
	}
}

func TestStopKillsGrandchildren(t *testing.T) {
	var out syncBuffer
	p := start(t, Spec{
		Name:    "parent",
		Command: []string{"/bin/sh", "-c", `sleep 60 & echo $!; wait`},
		Stdout:  &out,
	})
	grandchild := firstLinePid(t, &out)
	if !alive(grandchild) {
		t.Fatalf("grandchild %d not running", grandchild)
	}
	p.Stop(2 * time.Second)
	eventually(t, "the grandchild to die", func() bool { return !alive(grandchild) })
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	var out syncBuffer
	// SIGTERM is ignored by the shell and, inherited, by its sleep.
	p := start(t, Spec{
		Name:    "stubborn",
		Command: []string{"/bin/sh", "-c", `trap "" TERM; sleep 60 & echo $!; wait`},
		Stdout:  &out,
	})
	grandchild := firstLinePid(t, &out)
	begin := time.Now()
	p.Stop(200 * time.Millisecond)
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("Stop returned after %s, before the grace period", d)
	}
	if got := p.Status().LastExit; got != "signal: killed" {
		t.Errorf("last exit %q, want signal: killed", got)
	}
	eventually(t, "the grandchild to die", func() bool { return !alive(grandchild) })
}

func TestRestartAfterCrash(t *testing.T) {
	var out syncBuffer
	p := start(t, Spec{
		Name:       "crasher",
		Command:    []string{"/bin/sh", "-c", `echo run; exit 3`},
		Stdout:     &out,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
	})
	eventually(t, "three restarts", func() bool { return p.Restarts() >= 3 })
	if runs := strings.Count(out.String(), "run\n"); runs < 3 {
		t.Errorf("ran %d times, want at least 3", runs)
	}
	if got := p.Status().LastExit; got != "exit status 3" {
		t.Errorf("last exit %q, want exit status 3", got)
	}
	p.Stop(time.Second)
	if s := p.State(); s != StateStopped {
		t.Errorf("state after Stop = %s, want stopped", s)
	}
	n := p.Restarts()
	time.Sleep(100 * time.Millisecond)
	if p.Restarts() != n {
		t.Errorf("restarted after Stop")
	}
}

func TestBackoffStates(t *testing.T) {
	p := start(t, Spec{
		Name:       "slow-backoff",
		Command:    []string{"/bin/sh", "-c", `exit 1`},
		MinBackoff: time.Hour,
	})
	eventually(t, "backoff", func() bool { return p.State() == StateBackoff })
	if s := p.Status(); s.Pid != 0 || s.Restarts != 0 || s.LastExit != "exit status 1" {
		t.Errorf("status in backoff = %+v", s)
	}
	begin := time.Now()
	p.Stop(time.Second)
	if time.Since(begin) > 2*time.Second || p.State() != StateStopped {
		t.Errorf("Stop during backoff: took %s, state %s", time.Since(begin), p.State())
	}
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		name     string
		policy   RestartPolicy
		script   string
		wantErr  bool
		wantExit string
	}{
		{"never restarts a failure", RestartNever, "exit 3", true, "exit status 3"},
		{"never restarts a success", RestartNever, "exit 0", false, "exit status 0"},
		{"on failure does not restart a success", RestartOnFailure, "exit 0", false, "exit status 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, Spec{Name: tt.name, Command: []string{"/bin/sh", "-c", tt.script}, Restart: tt.policy})
			err := p.Wait()
			if (err != nil) != tt.wantErr {
				t.Errorf("Wait() = %v, want error %v", err, tt.wantErr)
			}
			want := Status{State: StateExited, LastExit: tt.wantExit}
			got := p.Status()
			got.StartedAt = time.Time{}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExitKillsLeftovers(t *testing.T) {
	var out syncBuffer
	p := start(t, Spec{
		Name:    "leaves-a-child",
		Command: []string{"/bin/sh", "-c", `sleep 60 & echo $!; exit 1`},
		Stdout:  &out,
		Restart: RestartNever,
	})
	p.Wait()
	grandchild := firstLinePid(t, &out)
	eventually(t, "the leftover to die", func() bool { return !alive(grandchild) })
}

func TestContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Spec{Name: "ctx", Command: []string{"sleep", "60"}, StopGrace: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	cancel()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped after its context was cancelled")
	}
	if p.State() != StateStopped || alive(pid) {
		t.Errorf("state %s, pid %d alive %v", p.State(), pid, alive(pid))
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"empty command", Spec{Name: "empty"}},
		{"no such program", Spec{Name: "missing", Command: []string{"/nonexistent/skein-test"}}},
		{"no such directory", Spec{Name: "dir", Command: []string{"/bin/sh", "-c", "true"}, Dir: "/nonexistent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(context.Background(), tt.spec, nil)
			var se *StartError
			if !errors.As(err, &se) {
				t.Errorf("Start() = %v, want a *StartError", err)
			}
		})
	}
}

func TestDirAndStderr(t *testing.T) {
	var out, errOut syncBuffer
	dir := t.TempDir()
	p := start(t, Spec{
		Name:    "dir",
		Command: []string{"/bin/sh", "-c", `pwd; echo oops >&2`},
		Dir:     dir,
		Stdout:  &out,
		Stderr:  &errOut,
		Restart: RestartNever,
	})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != dir {
		t.Errorf("pwd = %q, want %q", got, dir)
	}
	if got := errOut.String(); got != "oops\n" {
		t.Errorf("stderr = %q", got)
	}
}

// TestParentDeathKillsChild runs this test binary as a stand-in for `skein up`: it
// starts a supervised sleep and is then SIGKILLed; Pdeathsig must take the sleep along.
func TestParentDeathKillsChild(t *testing.T) {
	if os.Getenv("SUPERVISOR_TEST_PARENT") == "1" {
		p, err := Start(context.Background(), Spec{Name: "orphan", Command: []string{"sleep", "60"}}, nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(p.Pid())
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestParentDeathKillsChild$")
	parent.Env = append(os.Environ(), "SUPERVISOR_TEST_PARENT=1")
	stdout, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("parent said %q", line)
	}
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	parent.Process.Kill()
	parent.Wait()
	eventually(t, "the child to die with its parent", func() bool { return !alive(child) })
}
