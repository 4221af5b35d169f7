package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden loads every testdata/<case> folder and compares the mesh (want.json) or
// the errors (want.errors) with the golden file.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			mesh, err := Load(dir)
			var got []byte
			var golden string
			if err != nil {
				var list ErrorList
				if !errors.As(err, &list) {
					t.Fatalf("Load returned %T, want ErrorList: %v", err, err)
				}
				got, golden = []byte(list.Error()+"\n"), filepath.Join(dir, "want.errors")
			} else {
				got, err = json.MarshalIndent(mesh, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got, golden = append(got, '\n'), filepath.Join(dir, "want.json")
			}
			if *update {
				_ = os.Remove(filepath.Join(dir, "want.errors"))
				_ = os.Remove(filepath.Join(dir, "want.json"))
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}
