package forward

import (
	"regexp"
	"testing"
)

// TestNewRequestIDIsUUIDv4: the version and variant bits are set as RFC 9562 says, the
// rest is random: no repeats over many ids, every hex digit position varies.
func TestNewRequestIDIsUUIDv4(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	var first string
	varies := make([]bool, 36)
	for i := range 10000 {
		id := newRequestID()
		if !v4.MatchString(id) {
			t.Fatalf("%q is not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("%q repeated after %d ids", id, i)
		}
		seen[id] = true
		if i == 0 {
			first = id
		}
		for j := range id {
			varies[j] = varies[j] || id[j] != first[j]
		}
	}
	for j, v := range varies {
		fixed := j == 8 || j == 13 || j == 18 || j == 23 || j == 14 // dashes and the version digit
		if v == fixed {
			t.Errorf("position %d varies=%v, want %v", j, v, !fixed)
		}
	}
}

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = newRequestID()
	}
}
