package observe

import (
	"math"
	"testing"
)

func TestQuantile(t *testing.T) {
	cum := map[float64]float64{0.5: 0, 1: 50, 5: 90, 10: 100, math.Inf(1): 100}
	tests := []struct{ q, want float64 }{
		{0.5, 1},     // exactly the 1 ms bound
		{0.25, 0.75}, // halfway through (0.5, 1]
		{0.7, 3},     // halfway through (1, 5]
		{0.95, 7.5},  // halfway through (5, 10]
		{0.99, 9.5},
	}
	for _, tc := range tests {
		if got := quantile(tc.q, cum); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(0.99, map[float64]float64{10: 1, math.Inf(1): 2}); got != 10 {
		t.Errorf("rank in +Inf bucket: %v, want the largest finite bound 10", got)
	}
	if got := quantile(0.5, nil); got != 0 {
		t.Errorf("no data: %v", got)
	}
}
