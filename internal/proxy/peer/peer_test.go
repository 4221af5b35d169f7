package peer

import "testing"

func TestMemoComputesOncePerKey(t *testing.T) {
	var info Info
	calls := 0
	for range 3 {
		if v := info.Memo(1, func() string { calls++; return "a" }); v != "a" {
			t.Fatalf("got %q", v)
		}
	}
	if v := info.Memo(2, func() string { calls++; return "b" }); v != "b" {
		t.Fatalf("got %q", v)
	}
	if calls != 2 {
		t.Fatalf("%d computations, want one per key", calls)
	}
}
