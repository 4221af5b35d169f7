package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBootstrapGRPCGolden: the file grpc-go reads, through the command itself.
func TestBootstrapGRPCGolden(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"bootstrap", "--grpc", "client", "--xds-address", "127.0.0.1:15010", "--node-id", "client-grpc-1.default", "--zone", "z1", "--region", "r1"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "bootstrap-grpc.golden")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), out.String()); diff != "" {
		t.Errorf("skein bootstrap --grpc (-want +got):\n%s", diff)
	}
}

// TestBootstrapNeedsControlPlane: without a running skein up nor --xds it fails with a hint.
func TestBootstrapNeedsControlPlane(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"bootstrap", "--grpc", "client", "--state-dir", t.TempDir()})
	err := cmd.Execute()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("--xds")) {
		t.Fatalf("err = %v, want a hint about --xds", err)
	}
}
