package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"skein.dev/skein/internal/api"
)

// TestCredentialReadableOnlyByItsSidecar: skein up as root runs each replica's
// sidecar and app as users of their own, in both isolation modes (in netns the pod's
// capture rules exempt its sidecar's user). A sidecar's bootstrap
// credential is readable by that sidecar's user only: not by its own app, not by
// another workload's app, not by another sidecar. Processes are probed with exactly
// the uid/gid the running app and sidecar have (read from /proc).
func TestCredentialReadableOnlyByItsSidecar(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("separate users need root; as another user every process runs as skein up's user (docs/USAGE.md)")
	}
	for _, isolation := range []string{"none", "netns"} {
		t.Run(isolation, func(t *testing.T) { credentialIsolation(t, isolation) })
	}
}

func credentialIsolation(t *testing.T, isolation string) {
	m := startMeshWith(t, securityDir(t), isolation)
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	sidecars, apps := map[string]proc{}, map[string]proc{}
	replicaOf := func(name string) api.Replica {
		for _, w := range st.Workloads {
			if w.Name == name && len(w.Replicas) > 0 {
				return w.Replicas[0]
			}
		}
		t.Fatalf("no replica of %s", name)
		return api.Replica{}
	}
	seen := map[int]string{}
	for _, name := range []string{"web", "client"} {
		r := replicaOf(name)
		sc := procOf(t, r.ProxyPid)
		app := procOf(t, r.Pid)
		if sc.uid != r.ProxyUID || app.uid != r.AppUID || sc.uid == 0 || app.uid == 0 {
			t.Fatalf("%s: sidecar runs as %d (status %d), app as %d (status %d): want users of their own", name, sc.uid, r.ProxyUID, app.uid, r.AppUID)
		}
		for who, uid := range map[string]int{name + " sidecar": sc.uid, name + " app": app.uid} {
			if other, dup := seen[uid]; dup {
				t.Fatalf("%s and %s share uid %d", who, other, uid)
			}
			seen[uid] = who
		}
		sc.token = flagOf(t, r.ProxyPid, "--ca-token-file")
		// The sidecar is the lean binary built next to skein, exec'd under its own
		// user (and in netns, inside the pod).
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", r.ProxyPid)); err != nil || filepath.Base(exe) != "skein-proxy" {
			t.Errorf("%s sidecar runs %q (%v), want skein-proxy", name, exe, err)
		}
		env := m.execEnv(name)
		app.socket = strings.TrimPrefix(env["SPIFFE_ENDPOINT_SOCKET"], "unix://")
		sidecars[name], apps[name] = sc, app
	}

	read := func(p proc, file string) (string, error) {
		cmd := exec.Command("cat", file)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// The check can succeed: the sidecar's user reads its own credential.
	for name, sc := range sidecars {
		if out, err := read(sc, sc.token); err != nil || len(strings.TrimSpace(out)) < 16 {
			t.Fatalf("%s sidecar's user cannot read its own credential %s: %v %q", name, sc.token, err, out)
		}
	}
	cases := []struct {
		who  string
		p    proc
		file string
	}{
		{"client app reads web's credential", apps["client"], sidecars["web"].token},
		{"web app reads client's credential", apps["web"], sidecars["client"].token},
		{"client app reads its own sidecar's credential", apps["client"], sidecars["client"].token},
		{"client sidecar reads web's credential", sidecars["client"], sidecars["web"].token},
	}
	for _, c := range cases {
		if out, err := read(c.p, c.file); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("%s (%s): err %v, output %q; want permission denied", c.who, c.file, err, out)
		}
	}
	// Each app's Workload API socket (and its folder) belongs to that app's user.
	for name, app := range apps {
		for _, p := range []string{app.socket, app.socket[:strings.LastIndex(app.socket, "/")]} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			sys := fi.Sys().(*syscall.Stat_t)
			if int(sys.Uid) != app.uid || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s app's %s: owner %d mode %v, want owner %d and no access for others", name, p, sys.Uid, fi.Mode(), app.uid)
			}
		}
	}
	if out, err := read(apps["client"], apps["web"].socket); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("client app reaches web's Workload API socket: %v %q", err, out)
	}
}

// proc is a running sidecar or app.
type proc struct {
	uid, gid int
	token    string // sidecars: the credential file they were given
	socket   string // apps: their Workload API socket
}

// procOf reads a process's real uid and gid from /proc.
func procOf(t *testing.T, pid int) (p proc) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:":
			p.uid, _ = strconv.Atoi(f[1])
		case "Gid:":
			p.gid, _ = strconv.Atoi(f[1])
		}
	}
	return p
}

// flagOf returns a flag's value from a process's command line.
func flagOf(t *testing.T, pid int, flag string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(string(data), "\x00")
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatalf("pid %d has no %s: %q", pid, flag, args)
	return ""
}
