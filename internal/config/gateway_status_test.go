package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// TestGatewayStatusGolden renders the status skein computes for the Gateway API
// objects of every testdata/<case> that has a want-status.golden, as `skein get -o yaml`
// shows it (without lastTransitionTime, which is stamped when served).
func TestGatewayStatusGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/gateway*")
	for _, dir := range dirs {
		golden := filepath.Join(dir, "want-status.golden")
		if _, err := os.Stat(golden); err != nil && !*update {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			mesh, err := Load(dir)
			if err != nil {
				if !*update {
					t.Fatal(err)
				}
				return
			}
			var docs []map[string]any
			for _, o := range mesh.Objects {
				docs = append(docs, o.Manifest)
			}
			var buf bytes.Buffer
			for _, d := range docs {
				buf.WriteString("---\n")
				enc := yaml.NewEncoder(&buf)
				enc.SetIndent(2)
				if err := enc.Encode(d); err != nil {
					t.Fatal(err)
				}
				enc.Close()
			}
			out := buf.Bytes()
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}
