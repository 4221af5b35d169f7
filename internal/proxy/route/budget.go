package route

import (
	"sync"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// budgetSlots divides a budget's TTL window into this many counting slots.
const budgetSlots = 10

// Budget is a Linkerd-style retry budget: over a sliding window of TTL, retries may be
// at most Ratio × original requests plus MinPerSecond × TTL seconds. It is shared by
// every request of one compiled route; a small mutex guards its counters (they change
// on every request, so they cannot live in the immutable config).
type Budget struct {
	cfg  resource.RetryBudget
	now  func() time.Time
	slot time.Duration

	mu       sync.Mutex
	epoch    int64 // index of the slot counted in requests[epoch%budgetSlots]
	requests [budgetSlots]float64
	retries  [budgetSlots]float64
}

// NewBudget returns an empty budget; now is the clock (time.Now outside tests).
func NewBudget(cfg resource.RetryBudget, now func() time.Time) *Budget {
	return &Budget{cfg: cfg, now: now, slot: cfg.TTL / budgetSlots}
}

// advance moves the window to the current slot, forgetting slots older than the TTL.
func (b *Budget) advance() int {
	e := b.now().UnixNano() / int64(b.slot)
	if d := e - b.epoch; d > 0 {
		for i := int64(1); i <= min(d, budgetSlots); i++ {
			k := (b.epoch + i) % budgetSlots
			b.requests[k], b.retries[k] = 0, 0
		}
		b.epoch = e
	}
	return int(b.epoch % budgetSlots)
}

// Request records an original request (not a retry).
func (b *Budget) Request() {
	b.mu.Lock()
	b.requests[b.advance()]++
	b.mu.Unlock()
}

// TryRetry reports whether one more retry fits the budget and, if so, records it.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.advance()
	var reqs, rets float64
	for k := range budgetSlots {
		reqs += b.requests[k]
		rets += b.retries[k]
	}
	allowed := b.cfg.Ratio*reqs + b.cfg.MinPerSecond*b.cfg.TTL.Seconds()
	if rets+1 > allowed {
		return false
	}
	b.retries[i]++
	return true
}
