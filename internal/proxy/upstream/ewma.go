package upstream

import (
	"math"
	"time"
)

// Peak EWMA (skein extension, Linkerd's balancer): each endpoint keeps a moving average
// of its response latency that jumps to any higher sample at once (peak-sensitive) and
// decays towards lower ones with time constant Decay. Cost = average × (requests in
// flight + 1); of two random endpoints the cheaper wins, so a slow or overloaded
// endpoint sheds load quickly and earns it back gradually.

// observeRTT feeds one latency sample.
func (h *hostState) observeRTT(rtt time.Duration, now time.Time, decay time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sample := float64(rtt)
	switch {
	case !h.hasRTT || sample > h.rtt:
		h.rtt = sample
	default:
		elapsed := now.Sub(h.rttStamp)
		w := math.Exp(-float64(elapsed) / float64(decay))
		h.rtt = h.rtt*w + sample*(1-w)
	}
	h.hasRTT = true
	h.rttStamp = now
}

// ewmaCost is the endpoint's current cost.
func (h *hostState) ewmaCost(defaultRTT time.Duration) float64 {
	h.mu.Lock()
	rtt := h.rtt
	if !h.hasRTT {
		rtt = float64(defaultRTT)
	}
	h.mu.Unlock()
	return rtt * float64(h.active.Load()+1)
}

func (c *Cluster) pickPeakEWMA(eps []*Endpoint, exclude *Endpoint) *Endpoint {
	a, b := twoChoices(eps)
	if a == exclude {
		return b
	}
	if b == exclude {
		return a
	}
	d := c.Policy.PeakEWMA.DefaultRTT
	// Weight divides cost, so a heavier endpoint looks cheaper, as in least request.
	ca := a.host.ewmaCost(d) / float64(max(a.Weight, 1))
	cb := b.host.ewmaCost(d) / float64(max(b.Weight, 1))
	if ca <= cb {
		return a
	}
	return b
}

// EWMA returns the endpoint's latency average, false before any sample (for tools).
func (e *Endpoint) EWMA() (time.Duration, bool) {
	e.host.mu.Lock()
	defer e.host.mu.Unlock()
	return time.Duration(e.host.rtt), e.host.hasRTT
}
