package analyze

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*/want.txt")

// TestGolden analyzes every testdata/<case> folder and compares the text output.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var buf bytes.Buffer
			WriteText(&buf, Run(dir))
			path := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestEveryCodeHasAGoldenCase keeps the golden cases complete as checks are added.
func TestEveryCodeHasAGoldenCase(t *testing.T) {
	var all bytes.Buffer
	dirs, _ := filepath.Glob("testdata/*/want.txt")
	for _, d := range dirs {
		b, _ := os.ReadFile(d)
		all.Write(b)
	}
	for _, c := range Checks() {
		for _, code := range c.Codes {
			if !bytes.Contains(all.Bytes(), []byte("["+code+"]")) {
				t.Errorf("check %s: code %s appears in no testdata/*/want.txt", c.Name, code)
			}
		}
	}
}
