package local

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
)

// ProxyBinaryName is the lean sidecar binary (cmd/skein-proxy) that `skein up` looks
// for next to the skein executable.
const ProxyBinaryName = "skein-proxy"

// ProxyBuiltin, as an explicit proxy binary, runs sidecars as `skein proxy`.
const ProxyBuiltin = "builtin"

// ResolveProxyBinary picks what sidecars run. explicit (--proxy-binary or
// $SKEIN_PROXY_BINARY) must be an executable file, or ProxyBuiltin. Without it, a
// skein-proxy next to self is used when it comes from the same build (so a stale one
// left in bin/ is not run by a newer skein); otherwise "" and sidecars run `skein
// proxy`, which has the same flags and code (`go run ./cmd/skein up` keeps working).
// note says what was chosen and why, for the log.
func ResolveProxyBinary(self, explicit string) (path, note string, err error) {
	switch explicit {
	case ProxyBuiltin:
		return "", "sidecars run `skein proxy` (" + ProxyBuiltin + " requested)", nil
	case "":
	default:
		abs, err := filepath.Abs(explicit)
		if err != nil {
			return "", "", err
		}
		if err := isExecutable(abs); err != nil {
			return "", "", fmt.Errorf("proxy binary: %w", err)
		}
		return abs, "sidecars run " + abs, nil
	}
	cand := filepath.Join(filepath.Dir(self), ProxyBinaryName)
	if isExecutable(cand) != nil {
		return "", "sidecars run `skein proxy` (no " + ProxyBinaryName + " next to skein)", nil
	}
	if why := sameBuild(cand); why != "" {
		return "", "sidecars run `skein proxy`: " + cand + " is not from this build (" + why + ")", nil
	}
	return cand, "sidecars run " + cand, nil
}

func isExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// sameBuild compares the Go version, module version and VCS stamp of the running binary
// with other's; it returns what differs, or "". Binaries built from the same dirty tree
// cannot be told apart: `make build` builds both together.
func sameBuild(other string) string {
	theirs, err := buildinfo.ReadFile(other)
	if err != nil {
		return err.Error()
	}
	ours, ok := debug.ReadBuildInfo()
	if !ok {
		return "no build info in skein"
	}
	if ours.GoVersion != theirs.GoVersion {
		return "Go " + theirs.GoVersion + ", skein has " + ours.GoVersion
	}
	if ours.Main.Version != theirs.Main.Version {
		return "version " + theirs.Main.Version + ", skein is " + ours.Main.Version
	}
	for _, key := range []string{"vcs.revision", "vcs.modified"} {
		if a, b := setting(ours, key), setting(theirs, key); a != b {
			return fmt.Sprintf("%s %q, skein has %q", key, b, a)
		}
	}
	return ""
}

func setting(bi *debug.BuildInfo, key string) string {
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}
