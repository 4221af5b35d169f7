package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/api"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestPrintStatusGolden(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	cases := map[string]api.Status{
		"ready": {
			Generation: 3, ConfigDir: "/demo", Isolation: "none", XDSAddress: "127.0.0.1:15010",
			Workloads: []api.Workload{{Name: "catalog-v1", Namespace: "default", Replicas: []api.Replica{
				{Index: 0, State: "running", Port: 40001, Inbound: "127.0.0.1:40002", Admin: "127.0.0.1:40003", ProxyID: "catalog-v1-0.default", ProxyState: "running"},
			}}},
			Proxies: []api.Proxy{{ID: "catalog-v1-0.default", Connected: true, Version: "7-abc", InSync: true}},
			Ready:   true,
		},
		"nack-and-rejected-edit": {
			Generation: 4, ConfigDir: "/demo", Isolation: "none", XDSAddress: "127.0.0.1:15010",
			ConfigErrors:  []string{"routing.yaml:21:5: VirtualService default/catalog: spec.http[1].bogusField: unknown field"},
			ConfigErrorAt: at,
			Workloads: []api.Workload{{Name: "solo", Namespace: "default", Replicas: []api.Replica{
				{Index: 0, State: "running", Port: 40001, Inbound: "127.0.0.1:40002", Admin: "127.0.0.1:40003", ProxyID: "solo-0.default", ProxyState: "running"},
				{Index: 1, State: "backoff", Port: 40011, Inbound: "127.0.0.1:40012", Admin: "127.0.0.1:40013", ProxyID: "solo-1.default", ProxyState: "running"},
			}}},
			Proxies: []api.Proxy{
				{ID: "solo-0.default", Connected: true, Version: "9-def", NACK: &api.NACK{Type: "LDS", Version: "9-def", Message: "unsupported field envoy.config.listener.v3.Listener.per_connection_buffer_limit_bytes", At: at}},
				{ID: "solo-1.default", Connected: false, Version: "8-aaa"},
			},
			NotReady: []string{"solo-0.default: sidecar rejected config 9-def: unsupported field ...", "solo-1.default: app is backoff"},
		},
		"control": {
			Generation: 2, ConfigDir: "/mesh", Isolation: "control", XDSAddress: "127.0.0.1:15010",
			Proxies: []api.Proxy{
				{ID: "client-grpc-0a1b2c3d.default", Connected: true, Version: "5-abc", InSync: true},
				{ID: "edge-0.default", Connected: true, Version: "5-abc", NACK: &api.NACK{Type: "CDS", Version: "5-abc", Message: "bad cluster", At: at}},
			},
			NotReady: []string{"edge-0.default rejected config 5-abc: bad cluster"},
		},
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, st)
			path := filepath.Join("testdata", "status-"+name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("skein status output (-want +got):\n%s", diff)
			}
		})
	}
}
