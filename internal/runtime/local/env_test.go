package local

import "testing"

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"catalog":  "CATALOG",
		"tcp-echo": "TCP_ECHO",
		"grpc.web": "GRPC_WEB",
		"v2Api":    "V2API",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveIsolation(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{"", "none", false},
		{"auto", "none", false},
		{"none", "none", false},
		{"netns", "", true},
		{"docker", "", true},
	} {
		got, _, err := ResolveIsolation(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ResolveIsolation(%q) = %q, %v; want %q, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
