// Package e2e runs whole meshes: the real skein binary, real sidecar processes, real
// echo workloads, real sockets on 127.0.0.1. Nothing here is mocked.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/statedir"
)

// skeinBin is the binary built once for the whole package.
var skeinBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(proxylessClientEnv) != "" {
		os.Exit(proxylessClientMain()) // this process is a test's child, not the suite
	}
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "skein-e2e-bin")
	if err != nil {
		panic(err)
	}
	skeinBin = filepath.Join(dir, "skein")
	// Built as `make build` does: skein and, next to it, the lean sidecar binary
	// skein-proxy that skein up runs, so the suites exercise what users run.
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", dir+string(filepath.Separator),
		"skein.dev/skein/cmd/skein", "skein.dev/skein/cmd/skein-proxy")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("e2e: build skein and skein-proxy:", err)
		os.Exit(1)
	}
	sweepNetnsStateDirs()
	code := m.Run()
	os.RemoveAll(dir)
	sweepNetnsStateDirs()
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process writer and a test reader.
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

// mesh is a running `skein up`.
type mesh struct {
	t         *testing.T
	configDir string
	stateDir  string
	isolation string
	killed    bool // SIGKILLed by the test: nothing to stop
	cmd       *exec.Cmd
	out       *syncBuffer
}

// copyDir copies a config folder so tests may edit it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// startMesh runs `skein up configDir` and waits until `skein status --wait` says ready.
func startMesh(t *testing.T, configDir string, upArgs ...string) *mesh {
	t.Helper()
	return startMeshWith(t, configDir, "none", upArgs...)
}

// startMeshWith runs `skein up` in the given isolation mode with extra flags. A netns
// mesh is skipped where it cannot run (not root, no ip or iptables), and everything
// it creates is swept when the test ends, whatever happened.
func startMeshWith(t *testing.T, configDir, isolation string, args ...string) *mesh {
	t.Helper()
	m := &mesh{t: t, configDir: configDir, stateDir: t.TempDir(), isolation: isolation, out: &syncBuffer{}}
	if isolation == "netns" {
		m.stateDir = netnsStateDir(t)
	}
	m.cmd = exec.Command(skeinBin, append([]string{"up", configDir, "--state-dir", m.stateDir, "--isolation", isolation}, args...)...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	out, err := m.skein("status", "--wait", "90s")
	if err != nil {
		t.Fatalf("mesh not ready: %v\n%s\n--- skein up output:\n%s\n%s", err, out, m.out.String(), m.logs())
	}
	return m
}

// logs returns the tail of every log file, for failure messages.
func (m *mesh) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(m.stateDir, "logs", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

// stop interrupts skein up as Ctrl-C would, and checks it left no process behind.
func (m *mesh) stop() {
	t := m.t
	if m.killed {
		return
	}
	st, statusErr := m.status()
	_ = m.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- m.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("skein up exited with %v\n%s", err, m.out.String())
		}
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Errorf("skein up did not stop within 20s after SIGINT\n%s", m.out.String())
	}
	if m.isolation == "netns" {
		// Nothing of the pod network stays: namespaces, veths, bridge, rules, record.
		if left := podnet.WaitGone(context.Background(), m.stateDir, 10*time.Second); len(left) > 0 {
			t.Errorf("skein up left behind: %v", left)
		}
	}
	if statusErr != nil {
		return
	}
	// No orphans: every app and sidecar process is gone.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range st.Workloads {
		for _, r := range w.Replicas {
			for _, pid := range []int{r.Pid, r.ProxyPid} {
				for pid > 0 && syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if pid > 0 && syscall.Kill(pid, 0) == nil {
					t.Errorf("process %d of %s outlived skein up", pid, r.ProxyID)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
}

// skein runs the skein binary against this mesh's state dir.
func (m *mesh) skein(args ...string) (string, error) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args = append(args[:1:1], append([]string{"--state-dir", m.stateDir}, args[1:]...)...)
	cmd := exec.CommandContext(ctx, skeinBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (m *mesh) status() (api.Status, error) {
	inst, err := statedir.Read(m.stateDir)
	if err != nil {
		return api.Status{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return api.NewClient(inst.API).Status(ctx)
}

func (m *mesh) execEnv(workload string) map[string]string {
	m.t.Helper()
	inst, err := statedir.Read(m.stateDir)
	if err != nil {
		m.t.Fatal(err)
	}
	env, err := api.NewClient(inst.API).ExecEnv(context.Background(), workload, "default")
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range env.Env {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// callSummary mirrors loadgen.Summary's JSON.
type callSummary struct {
	Requests    int            `json:"requests"`
	Errors      int            `json:"errors"`
	Status      map[int]int    `json:"status"`
	Backends    map[string]int `json:"backends"`
	FirstErrors []string       `json:"firstErrors"`
}

// call runs `skein exec WORKLOAD -- skein call ARGS -o json` and decodes the summary.
func (m *mesh) call(workload string, args ...string) callSummary {
	m.t.Helper()
	full := append([]string{"exec", workload, "--", "skein", "call", "-o", "json"}, args...)
	out, err := m.skein(full...)
	var s callSummary
	if jerr := json.Unmarshal([]byte(jsonLine(out)), &s); jerr != nil {
		m.t.Fatalf("skein %s: %v (%v)\n%s\n%s", strings.Join(full, " "), err, jerr, out, m.logs())
	}
	return s
}

// jsonLine returns the first line of s that holds a JSON object.
func jsonLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "{") {
			return l
		}
	}
	return ""
}

// readAccessLog reads a sidecar's access log once ready says its content is complete,
// or after 10 s. Sidecars write their access log in batches every 100 ms, so a line
// shows up shortly after its request finished, not at once.
func readAccessLog(path string, ready func(data string) bool) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if ready(string(data)) || time.Now().After(deadline) {
			return string(data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
