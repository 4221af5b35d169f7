package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/statedir"
	"skein.dev/skein/internal/testutil/netnstest"
)

// netnsStateRoot holds the state dirs of netns meshes, so a later run can find and
// sweep what a killed test binary left (t.TempDir's folders cannot be found again).
var netnsStateRoot = filepath.Join(os.TempDir(), "skein-e2e-netns")

// netnsStateDir skips the test where isolation netns cannot run, and returns a state
// dir that is swept (pod network recovered, folder removed) when the test ends.
func netnsStateDir(t *testing.T) string {
	t.Helper()
	netnstest.Require(t)
	if err := os.MkdirAll(netnsStateRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(netnsStateRoot, "state")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the mesh's own cleanup, so it runs after it: the deferred sweep.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := podnet.Recover(ctx, dir, nil); err != nil {
			t.Errorf("sweep: %v", err)
		}
		os.RemoveAll(dir)
	})
	return dir
}

// sweepNetnsStateDirs recovers the pod networks of state dirs whose skein up is gone.
func sweepNetnsStateDirs() {
	if netnstest.Unavailable() != "" {
		return
	}
	entries, _ := os.ReadDir(netnsStateRoot)
	for _, e := range entries {
		dir := filepath.Join(netnsStateRoot, e.Name())
		if _, err := statedir.Read(dir); !errors.Is(err, statedir.ErrNotRunning) {
			continue // a live instance (another test run on this machine)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if podnet.Recover(ctx, dir, nil) == nil {
			os.RemoveAll(dir)
		}
		cancel()
	}
}
