package local

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveProxyBinary: an explicit binary must be executable; next to skein, only a
// skein-proxy of the same build is picked (a copy of this test binary is), anything
// else falls back to `skein proxy`.
func TestResolveProxyBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyExe := func(dst string) {
		t.Helper()
		src, err := os.Open(self)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, src); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	same := t.TempDir() // skein + a skein-proxy of the same build
	copyExe(filepath.Join(same, ProxyBinaryName))
	other := t.TempDir() // skein + a skein-proxy that is no Go binary
	if err := os.WriteFile(filepath.Join(other, ProxyBinaryName), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(t.TempDir(), "proxy")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, self, explicit string
		want, noteHas        string
		wantErr              bool
	}{
		{name: "same build next to skein", self: filepath.Join(same, "skein"), want: filepath.Join(same, ProxyBinaryName)},
		{name: "none next to skein", self: filepath.Join(t.TempDir(), "skein"), noteHas: "no skein-proxy"},
		{name: "another build next to skein", self: filepath.Join(other, "skein"), noteHas: "not from this build"},
		{name: "builtin wins over one next to skein", self: filepath.Join(same, "skein"), explicit: ProxyBuiltin, noteHas: "builtin"},
		{name: "explicit path", self: "/nowhere/skein", explicit: filepath.Join(other, ProxyBinaryName), want: filepath.Join(other, ProxyBinaryName)},
		{name: "explicit missing", self: "/nowhere/skein", explicit: "/nowhere/skein-proxy", wantErr: true},
		{name: "explicit not executable", self: "/nowhere/skein", explicit: notExec, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note, err := ResolveProxyBinary(tc.self, tc.explicit)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("path = %q, want %q (note %q)", got, tc.want, note)
			}
			if !strings.Contains(note, tc.noteHas) {
				t.Errorf("note = %q, want it to mention %q", note, tc.noteHas)
			}
		})
	}
}
