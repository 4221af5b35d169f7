// Package gctune sets the Go garbage collector up for a sidecar: a soft memory limit,
// and a floor under the heap goal.
//
// A sidecar's live heap is small (~5 MB: its config, protobuf descriptors, TLS state)
// while every request allocates (~13 KB at the time of writing). With the default
// GOGC=100 the heap goal is twice the live heap, so at 1,000 RPS the GC ran ~2.5 times
// a second and took about a sixth of the proxy's CPU (docs/BENCHMARKS.md). Raising GOGC for
// good would make a sidecar with a large config (an unscoped mesh) grow without need;
// so after every GC cycle the tuner sets GOGC such that the heap goal is
// max(HeapFloor, live × (1 + GOGC/100)) (the approach of Uber's and PingCAP's GC
// tuners): small heaps get the floor, large ones keep the default behaviour. The floor
// applies only while the proxy allocates fast (BusyRate); an idle sidecar collects at
// 1.5 × its live heap (IdleGOGC), so it does not drift up to the floor between requests.
package gctune

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults for sidecars (measured in docs/BENCHMARKS.md, "this round: memory").
const (
	// DefaultHeapFloor keeps a busy proxy's GC from running before the heap reaches
	// 12 MiB: at 1,000 RPS it cut the GC's CPU by a fifth to a half for ~2 MB of RSS
	// (14 MiB came to 39.7 MB, 16 MiB to 43 MB: over the 40 MB target).
	DefaultHeapFloor = 12 << 20
	// DefaultMemoryLimit is the soft limit above which the GC works harder rather
	// than let the process grow (Go's GC CPU limiter caps that work at 50%).
	DefaultMemoryLimit = 256 << 20
	// BusyRate is the allocation rate (bytes/s, since the previous GC) from which the
	// floor applies: about 150 requests a second at ~13 KB each.
	BusyRate = 2 << 20
	// IdleGOGC is the GOGC below BusyRate: an idle sidecar's GC costs next to
	// nothing, and a heap goal of 1.5 × live instead of 2 × live keeps its RSS down.
	IdleGOGC = 50
	// maxGOGC bounds the tuned GOGC for tiny live heaps.
	maxGOGC = 1000
)

// Options configure Start. Zero values disable each part.
type Options struct {
	HeapFloor   uint64
	MemoryLimit int64
}

// Start applies the options unless the environment already decides: GOMEMLIMIT set
// keeps the runtime's limit, GOGC set turns the tuner off. The tuner stops when ctx
// ends. It returns a description of what it did, for the log.
func Start(ctx context.Context, opts Options) (applied []string) {
	if opts.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(opts.MemoryLimit)
		applied = append(applied, "memory limit")
	}
	if opts.HeapFloor > 0 && os.Getenv("GOGC") == "" {
		base := debug.SetGCPercent(100)
		debug.SetGCPercent(base)
		t := &tuner{ctx: ctx, floor: opts.HeapFloor, base: base, idle: min(base, IdleGOGC), busy: BusyRate}
		t.arm()
		applied = append(applied, "heap floor")
	}
	return applied
}

type tuner struct {
	ctx   context.Context
	floor uint64
	base  int
	idle  int          // GOGC while not busy
	busy  float64      // BusyRate; tests lower it
	last  atomic.Int64 // the GOGC set last (tests)

	// Owned by the cleanup goroutine: the previous cycle's allocation total and time.
	prevAllocs uint64
	prevAt     time.Time
}

// gcSentinel dies in every GC cycle; its cleanup re-tunes and arms a new one. It
// holds a pointer so that it is never tiny-allocated (cleanups of tiny objects may
// never run).
type gcSentinel struct{ _ *int }

func (t *tuner) arm() {
	runtime.AddCleanup(new(gcSentinel), func(t *tuner) { t.onGC() }, t)
}

func (t *tuner) onGC() {
	if t.ctx.Err() != nil {
		debug.SetGCPercent(t.base)
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	gogc := t.base
	if s[0].Value.Kind() == metrics.KindUint64 && s[1].Value.Kind() == metrics.KindUint64 {
		live, allocs, now := s[0].Value.Uint64(), s[1].Value.Uint64(), time.Now()
		if !t.prevAt.IsZero() && allocs > t.prevAllocs {
			rate := float64(allocs-t.prevAllocs) / now.Sub(t.prevAt).Seconds()
			gogc = t.idle
			if rate >= t.busy {
				gogc = percentFor(t.floor, live, t.base)
			}
		}
		t.prevAllocs, t.prevAt = allocs, now
	}
	if int64(gogc) != t.last.Load() {
		debug.SetGCPercent(gogc)
		t.last.Store(int64(gogc))
	}
	t.arm()
}

// percentFor is the GOGC whose heap goal, live × (1 + GOGC/100), reaches floor; never
// below base, never above maxGOGC.
func percentFor(floor, live uint64, base int) int {
	if live == 0 {
		return base
	}
	p := float64(floor)/float64(live)*100 - 100
	switch {
	case p <= float64(base):
		return base
	case p >= maxGOGC:
		return maxGOGC
	}
	return int(math.Ceil(p))
}

// Bytes is a byte count flag value: a number with an optional KiB, MiB or GiB suffix
// (as GOMEMLIMIT takes them); 0 turns the setting off.
type Bytes int64

func (b *Bytes) String() string {
	switch v := int64(*b); {
	case v != 0 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GiB"
	case v != 0 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MiB"
	case v != 0 && v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KiB"
	default:
		return strconv.FormatInt(v, 10)
	}
}

func (b *Bytes) Set(s string) error {
	n, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, unit = v, u.n
			break
		}
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/unit {
		return fmt.Errorf("%q: want a byte count such as 16MiB (KiB, MiB, GiB), or 0 for off", s)
	}
	*b = Bytes(v * unit)
	return nil
}
