package local

import (
	"os"
	"strconv"
)

// Separate users. A sidecar's bootstrap credential must be readable by that sidecar
// only, and a workload must not read another's. Processes of one user cannot be kept
// apart (same-user processes may read each other's files, /proc/<pid>/fd and memory),
// so when skein up runs as root each replica gets users of its own: the sidecar runs
// as one (isolation netns: the pod's capture rules exempt it instead of 1337) and owns its
// credential file (0600 in a 0700 folder), the app runs as another, owning its
// Workload API socket. Without root, every process runs as skein up's user and the
// credential file is only protected from other users of the machine (docs/USAGE.md).
const (
	// userBase is the first id of the range replicas' users are taken from: high, so
	// it collides with no account (Linux ids are 32-bit).
	userBase = 1_337_000_000
)

// replicaUsers are the uids (= gids) a replica's processes run as; -1 is skein up's.
type replicaUsers struct {
	sidecar, app int
}

// sameUser is every process as skein up's user.
var sameUser = replicaUsers{sidecar: -1, app: -1}

// usersFor allocates a replica's users.
func (m *Mesh) usersFor() replicaUsers {
	if !m.separateUsers {
		return sameUser
	}
	n := int(m.userSeq.Add(1))
	return replicaUsers{sidecar: userBase + 2*n, app: userBase + 2*n + 1}
}

// separateUsersPossible reports whether processes can be started as other users.
func separateUsersPossible() bool { return os.Geteuid() == 0 }

// asUser wraps a command in `skein netns-exec` to run in a pod's namespace (netns
// "" stays in this one) and/or as uid (-1: unchanged). The helper opens the program
// before it drops privileges, so the binary need not be reachable by uid.
func asUser(self, netns string, uid int, cmd []string) []string {
	if netns == "" && uid < 0 {
		return cmd
	}
	out := []string{self, "netns-exec"}
	if netns != "" {
		out = append(out, "--netns", netns)
	}
	if uid >= 0 {
		out = append(out, "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(uid))
	}
	return append(append(out, "--"), cmd...)
}

// inheritAccessLog opens the sidecar's access log here (a sidecar under its own user
// cannot open files in the state dir) and rewrites the command to use descriptor 3,
// which the supervisor passes at every (re)start.
func (r *replicaRun) inheritAccessLog(proxyCmd []string) ([]*os.File, error) {
	var extra []*os.File
	for i, a := range proxyCmd {
		if a == "--access-log" && i+1 < len(proxyCmd) && proxyCmd[i+1] != "-" {
			f, err := openLog(proxyCmd[i+1])
			if err != nil {
				return nil, err
			}
			r.files = append(r.files, f) // kept open for restarts, closed by stop
			extra = append(extra, f)
			proxyCmd[i+1] = "/dev/fd/3"
		}
	}
	return extra, nil
}
