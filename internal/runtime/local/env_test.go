package local

import (
	"strings"
	"testing"
)

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

// TestResolveIsolation: auto picks netns exactly where it can run, and says why not
// otherwise; netns where it cannot run is an error naming the reason.
func TestResolveIsolation(t *testing.T) {
	why := netnsUnavailable()
	auto, wantNetnsErr := "netns", false
	if why != "" {
		auto, wantNetnsErr = "none", true
	}
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{"", auto, false},
		{"auto", auto, false},
		{"none", "none", false},
		{"netns", map[bool]string{false: "netns", true: ""}[wantNetnsErr], wantNetnsErr},
		{"docker", "", true},
	} {
		got, reason, err := ResolveIsolation(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ResolveIsolation(%q) = %q, %v; want %q, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if (tc.in == "" || tc.in == "auto") && why != "" && !strings.Contains(reason, why) {
			t.Errorf("auto falls back to none with reason %q, want it to say %q", reason, why)
		}
	}
}
