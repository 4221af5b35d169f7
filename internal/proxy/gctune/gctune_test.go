package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	for _, tc := range []struct {
		floor, live uint64
		base, want  int
	}{
		{16 << 20, 5 << 20, 100, 220},  // small heap: goal raised to the floor
		{16 << 20, 8 << 20, 100, 100},  // goal 2 × 8 MiB already reaches the floor
		{16 << 20, 40 << 20, 100, 100}, // large heap: the default
		{16 << 20, 1 << 10, 100, 1000}, // tiny heap: capped
		{16 << 20, 0, 100, 100},        // nothing known yet
		{16 << 20, 5 << 20, 300, 300},  // a higher base stays
	} {
		if got := percentFor(tc.floor, tc.live, tc.base); got != tc.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", tc.floor, tc.live, tc.base, got, tc.want)
		}
	}
}

var sink []byte

// TestTunerRaisesGOGCAfterGC: after GC cycles with a small live heap, while the program
// allocates, the tuner has set GOGC to reach the floor; when its context ends it puts
// the base back.
func TestTunerRaisesGOGCAfterGC(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	ctx, cancel := context.WithCancel(context.Background())
	tu := &tuner{ctx: ctx, floor: 1 << 30, base: 100, idle: 50, busy: 1}
	tu.arm()
	deadline := time.Now().Add(10 * time.Second)
	for tu.last.Load() <= 100 && time.Now().Before(deadline) {
		for range 100 {
			sink = make([]byte, 1<<10) // busy: allocating between cycles
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := tu.last.Load(); got <= 100 {
		t.Fatalf("GOGC after GC = %d, want raised above 100 for a 1 GiB floor", got)
	}
	if cur := debug.SetGCPercent(100); int64(cur) != tu.last.Load() {
		t.Errorf("runtime GOGC %d, tuner says %d", cur, tu.last.Load())
	}
	cancel()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
}

// TestTunerIdle: below the busy rate the floor does not apply; the idle GOGC does.
func TestTunerIdle(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tu := &tuner{ctx: ctx, floor: 1 << 30, base: 100, idle: 50, busy: 1 << 50}
	tu.last.Store(-1)
	tu.arm()
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if got := tu.last.Load(); got != 50 {
		t.Errorf("GOGC = %d while idle, want 50", got)
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "16MiB": 16 << 20, "256MiB": 256 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "1000": 1000, "7B": 7} {
		var b Bytes
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "16MB", "x", "99999999999GiB"} {
		var b Bytes
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
	b := Bytes(16 << 20)
	if b.String() != "16MiB" {
		t.Errorf("String() = %q", b.String())
	}
}
