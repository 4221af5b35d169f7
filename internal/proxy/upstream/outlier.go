package upstream

import (
	"math/rand/v2"
	"time"
)

// Outlier detection, Envoy's consecutive-error detectors: a host that answers
// Consecutive5xx 5xx (or locally originated failures: connect failure, reset,
// timeout) in a row, or ConsecutiveGateway 502/503/504 or local failures in a row, is
// ejected — unless that would eject more than MaxEjectionPercent of the hosts (one
// host may always be ejected). It stays out for BaseEjectionTime × the number of its
// ejections (capped at max(MaxEjectionTime, BaseEjectionTime)) and returns at the
// next interval tick after that; each tick it then spends in service lowers the
// multiplier by one. Ticks are counted from the cluster's creation, so returning is
// computed when asked rather than by a timer goroutine.

// ObserveResponse reports the status of an upstream answer and its latency to the
// response headers (peak EWMA, outlier detection).
func (c *Cluster) ObserveResponse(ep *Endpoint, status int, latency time.Duration) {
	if ep == nil || ep.host == nil {
		return
	}
	if c.Policy.PeakEWMA != nil {
		ep.host.observeRTT(latency, c.now(), c.Policy.PeakEWMA.Decay)
	}
	c.observe(ep, status >= 500, status == 502 || status == 503 || status == 504)
}

// ObserveLocalFailure reports a locally originated failure: connect failure, reset
// before the answer, or timeout.
func (c *Cluster) ObserveLocalFailure(ep *Endpoint, latency time.Duration) {
	if ep == nil || ep.host == nil {
		return
	}
	if c.Policy.PeakEWMA != nil {
		ep.host.observeRTT(latency, c.now(), c.Policy.PeakEWMA.Decay)
	}
	c.observe(ep, true, true)
}

func (c *Cluster) observe(ep *Endpoint, serverError, gatewayError bool) {
	od := c.Policy.Outlier
	if od == nil {
		return
	}
	h := ep.host
	h.mu.Lock()
	if serverError {
		h.consecutive5xx++
	} else {
		h.consecutive5xx = 0
	}
	if gatewayError {
		h.consecutiveGateway++
	} else {
		h.consecutiveGateway = 0
	}
	attempt := false
	if od.Consecutive5xx > 0 && h.consecutive5xx >= od.Consecutive5xx {
		attempt = enforced(od.EnforcingConsecutive5xx)
		h.consecutive5xx = 0
	}
	if od.ConsecutiveGateway > 0 && h.consecutiveGateway >= od.ConsecutiveGateway {
		attempt = attempt || enforced(od.EnforcingConsecutiveGateway)
		h.consecutiveGateway = 0
	}
	h.mu.Unlock()
	if attempt {
		c.eject(ep)
	}
}

func enforced(percent uint32) bool {
	return percent >= 100 || percent > 0 && rand.Uint32N(100) < percent
}

func (c *Cluster) eject(ep *Endpoint) {
	od := c.Policy.Outlier
	st := c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	now := c.now()
	h := ep.host
	if h.ejectedAt(now) {
		return
	}
	active := 0
	seen := map[*hostState]bool{}
	for _, e := range c.endpoints {
		if !seen[e.host] {
			seen[e.host] = true
			if e.host.ejectedAt(now) {
				active++
			}
		}
	}
	if active > 0 && 100*(active+1) > int(od.MaxEjectionPercent)*len(seen) {
		return
	}
	h.mu.Lock()
	if u := h.ejectedUntil.Load(); u != 0 {
		back := uint32(c.ticks(time.Unix(0, u), now))
		h.multiplier -= min(h.multiplier, back)
	}
	h.multiplier++
	d := od.BaseEjectionTime * time.Duration(h.multiplier)
	d = min(d, max(od.MaxEjectionTime, od.BaseEjectionTime))
	h.ejectedUntil.Store(c.nextTick(now.Add(d)).UnixNano())
	h.mu.Unlock()
}

// nextTick is the first interval tick at or after t.
func (c *Cluster) nextTick(t time.Time) time.Time {
	iv := c.Policy.Outlier.Interval
	since := t.Sub(c.state.created)
	n := (since + iv - 1) / iv
	return c.state.created.Add(n * iv)
}

// ticks counts interval ticks in (a, b].
func (c *Cluster) ticks(a, b time.Time) int64 {
	iv := c.Policy.Outlier.Interval
	return int64(b.Sub(c.state.created)/iv) - int64(a.Sub(c.state.created)/iv)
}

// Ejected reports whether outlier detection keeps the endpoint out now.
func (c *Cluster) Ejected(ep *Endpoint) bool { return ep.host.ejectedAt(c.now()) }

// ObserveConnectSuccess reports a TCP connection established: like a success, it ends
// a run of consecutive failures.
func (c *Cluster) ObserveConnectSuccess(ep *Endpoint) {
	if ep != nil && ep.host != nil {
		c.observe(ep, false, false)
	}
}
