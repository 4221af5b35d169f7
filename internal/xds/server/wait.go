package server

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// WaitAcked waits until snapshots of generation gen are set for every node and every
// connected proxy (not proxyless clients, which hold no trust bundle) ACKed its newest
// ones. A root rotation uses it before it may go on to its next step.
func (s *Server) WaitAcked(ctx context.Context, gen int64) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		var pending []string
		if s.AppliedGeneration() < gen {
			pending = append(pending, "control plane push")
		}
		for _, p := range s.Status() {
			if p.Connected && p.Proxy != nil && !p.InSync {
				pending = append(pending, p.ID)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(pending)
			return fmt.Errorf("waiting for %s: %w", strings.Join(pending, ", "), ctx.Err())
		case <-t.C:
		}
	}
}
