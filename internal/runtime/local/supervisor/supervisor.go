// Package supervisor runs the processes of `skein up` (workloads and their sidecars):
// each in its own process group, restarted with capped exponential backoff when it
// exits, and stopped with SIGTERM then SIGKILL to the whole group, so nothing is left
// behind.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// State is where a supervised process is in its life.
type State string

const (
	StateStarting State = "starting" // being started
	StateRunning  State = "running"  // started and not exited
	StateBackoff  State = "backoff"  // exited; waiting before the next start
	StateExited   State = "exited"   // exited and, by its policy, not restarted
	StateStopped  State = "stopped"  // stopped by Stop or by its context
)

// RestartPolicy says when an exited process is started again (as a Pod's restartPolicy).
type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "" // the default, as for a Deployment's pods
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

// Defaults of the zero Spec fields.
const (
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	DefaultStopGrace  = 5 * time.Second
	// stableAfter is how long a run must last for the backoff to start over.
	stableAfter = 10 * time.Second
	// pipeDrain bounds how long Wait waits for output still held open by processes
	// that left the group after the leader exited.
	pipeDrain = time.Second
)

// Spec describes one supervised process.
type Spec struct {
	// Name identifies the process in logs.
	Name string
	// Command is the program (looked up in PATH) and its arguments.
	Command []string
	// Env is the full environment as KEY=VALUE; nil inherits this process's.
	Env []string
	// Dir is the working directory; empty means this process's.
	Dir string
	// Stdout and Stderr receive the output; nil discards it. An *os.File is given to
	// the child directly.
	Stdout, Stderr io.Writer
	// ExtraFiles are inherited as descriptors 3, 4, ... (os/exec's ExtraFiles).
	ExtraFiles []*os.File
	Restart    RestartPolicy
	// MinBackoff and MaxBackoff bound the wait before a restart, which doubles after
	// every quick exit; zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when the context passed to
	// Start is cancelled; zero means DefaultStopGrace.
	StopGrace time.Duration
}

// StartError is a process that could not be started at all.
type StartError struct {
	Name string
	Err  error
}

func (e *StartError) Error() string { return fmt.Sprintf("starting %s: %v", e.Name, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// Status is a consistent snapshot of a Process.
type Status struct {
	State    State
	Pid      int // 0 when not running
	Restarts int
	// LastExit describes the last exit ("exit status 3", "signal: killed"); empty
	// before the first.
	LastExit  string
	StartedAt time.Time
}

// Process is one supervised process. Its methods are safe for concurrent use.
type Process struct {
	spec Spec
	log  *slog.Logger

	stop chan time.Duration // a Stop request with its grace period
	done chan struct{}      // closed when supervision ended

	mu      sync.Mutex
	status  Status
	lastErr error // of the last exit; what Wait returns
}

// Start starts the process and supervises it until Stop is called, ctx is cancelled, or
// it exits and its RestartPolicy says not to start it again. An error means the first
// start failed (no such program, bad directory): nothing is supervised then.
func Start(ctx context.Context, spec Spec, log *slog.Logger) (*Process, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, &StartError{Name: spec.Name, Err: errors.New("empty command")}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if spec.MinBackoff <= 0 {
		spec.MinBackoff = DefaultMinBackoff
	}
	if spec.MaxBackoff <= 0 {
		spec.MaxBackoff = DefaultMaxBackoff
	}
	spec.MaxBackoff = max(spec.MaxBackoff, spec.MinBackoff)
	if spec.StopGrace <= 0 {
		spec.StopGrace = DefaultStopGrace
	}
	p := &Process{
		spec: spec,
		log:  log.With("process", spec.Name),
		stop: make(chan time.Duration, 1),
		done: make(chan struct{}),
	}
	p.setState(StateStarting)
	r, err := p.startOnce()
	if err != nil {
		p.setState(StateExited)
		close(p.done)
		return nil, err
	}
	go p.supervise(ctx, r)
	return p, nil
}

// run is one started instance of the process.
type run struct {
	cmd     *exec.Cmd
	exited  chan error // receives cmd.Wait's result once
	started time.Time
}

func (p *Process) startOnce() (*run, error) {
	cmd := exec.Command(p.spec.Command[0], p.spec.Command[1:]...)
	cmd.Env = p.spec.Env
	cmd.Dir = p.spec.Dir
	cmd.Stdout = p.spec.Stdout
	cmd.Stderr = p.spec.Stderr
	cmd.ExtraFiles = p.spec.ExtraFiles
	cmd.SysProcAttr = sysProcAttr()
	// Output not given as a file is copied through a pipe that grandchildren may keep
	// open after the leader died: do not let that block Wait for long.
	cmd.WaitDelay = pipeDrain
	if err := cmd.Start(); err != nil {
		return nil, &StartError{Name: p.spec.Name, Err: err}
	}
	r := &run{cmd: cmd, exited: make(chan error, 1), started: time.Now()}
	go func() { r.exited <- cmd.Wait() }()
	p.mu.Lock()
	p.status.State, p.status.Pid, p.status.StartedAt = StateRunning, cmd.Process.Pid, r.started
	p.mu.Unlock()
	p.log.Info("started", "pid", cmd.Process.Pid, "command", p.spec.Command)
	return r, nil
}

// supervise owns the running instance: it is the only goroutine that starts, signals
// or waits for it.
func (p *Process) supervise(ctx context.Context, r *run) {
	defer close(p.done)
	backoff := p.spec.MinBackoff
	for {
		var err error
		select {
		case err = <-r.exited:
		case grace := <-p.stop:
			p.terminate(r, grace)
			return
		case <-ctx.Done():
			p.terminate(r, p.spec.StopGrace)
			return
		}
		// The leader is gone; whatever it left in its group goes too.
		killGroup(r.cmd.Process.Pid, syscall.SIGKILL)
		p.recordExit(err, StateExited)
		if !p.restarts(err) {
			p.log.Info("exited", "err", errString(err))
			return
		}
		if time.Since(r.started) >= stableAfter {
			backoff = p.spec.MinBackoff
		}
		for r = nil; r == nil; {
			p.log.Info("exited, restarting", "err", errString(err), "backoff", backoff)
			p.setState(StateBackoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				p.setState(StateStopped)
				return
			case <-ctx.Done():
				t.Stop()
				p.setState(StateStopped)
				return
			}
			backoff = min(2*backoff, p.spec.MaxBackoff)
			p.mu.Lock()
			p.status.Restarts++
			p.status.State = StateStarting
			p.mu.Unlock()
			if r, err = p.startOnce(); err != nil {
				p.recordExit(err, StateBackoff)
			}
		}
	}
}

// terminate sends SIGTERM to the group, SIGKILL after grace, and waits for the leader.
func (p *Process) terminate(r *run, grace time.Duration) {
	pid := r.cmd.Process.Pid
	killGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	var err error
	select {
	case err = <-r.exited:
	case <-t.C:
		p.log.Warn("did not stop in time; killing", "pid", pid, "grace", grace)
		killGroup(pid, syscall.SIGKILL)
		err = <-r.exited
	}
	// Members that outlived the leader (or ignored SIGTERM) do not outlive the stop.
	killGroup(pid, syscall.SIGKILL)
	p.recordExit(err, StateStopped)
	p.log.Info("stopped", "pid", pid, "err", errString(err))
}

func (p *Process) restarts(err error) bool {
	switch p.spec.Restart {
	case RestartNever:
		return false
	case RestartOnFailure:
		return err != nil
	default:
		return true
	}
}

func (p *Process) recordExit(err error, s State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.State, p.status.Pid = s, 0
	p.status.LastExit = errString(err)
	if err == nil {
		p.status.LastExit = "exit status 0"
	}
	p.lastErr = err
}

func (p *Process) setState(s State) {
	p.mu.Lock()
	p.status.State = s
	p.mu.Unlock()
}

// killGroup signals the process group led by pid. The group id is the leader's pid
// (Setpgid); the kernel does not reuse it while any member lives, so signalling it
// after the leader was reaped reaches only leftovers of that group (or nobody).
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig) // ESRCH: the group is already empty
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Stop stops supervision: no more restarts; the process group gets SIGTERM, then
// SIGKILL after grace. It returns when the process has exited. Calling it again, or
// after the process ended by itself, does nothing.
func (p *Process) Stop(grace time.Duration) {
	select {
	case p.stop <- grace:
	default: // a stop is already pending
	}
	<-p.done
}

// Wait blocks until supervision ends and returns the last exit's error (nil for a
// clean exit; a stopped process usually reports the signal that stopped it).
func (p *Process) Wait() error {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Done is closed when supervision has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status returns a snapshot of the process's state.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// State is Status().State.
func (p *Process) State() State { return p.Status().State }

// Pid is the running instance's process id, 0 when none runs.
func (p *Process) Pid() int { return p.Status().Pid }

// Restarts counts the starts after the first.
func (p *Process) Restarts() int { return p.Status().Restarts }
