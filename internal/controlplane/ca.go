package controlplane

import (
	"context"
	"fmt"
	"time"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/ca/castatus"
)

var _ api.CABackend = (*ControlPlane)(nil)

// CAStatus implements api.CABackend.
func (cp *ControlPlane) CAStatus() api.CAStatus { return castatus.Of(cp.ca) }

// RotateRoot implements api.CABackend as skein up does: prepare a new root, push the
// bundle with both roots, wait until every connected proxy ACKed it, then sign with
// the new root. Proxies renew onto it at their certificates' half-life.
func (cp *ControlPlane) RotateRoot(ctx context.Context) (api.CAStatus, error) {
	cp.rotating.Lock()
	defer cp.rotating.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	if err := cp.ca.PrepareRootRotation(); err != nil {
		return cp.CAStatus(), err
	}
	if err := cp.xds.WaitAcked(ctx, cp.push()); err != nil {
		return cp.CAStatus(), fmt.Errorf("the new bundle did not reach every proxy, so the root was not switched (it stays trusted; run rotate-root again): %w", err)
	}
	if err := cp.ca.RotateRoot(); err != nil {
		return cp.CAStatus(), err
	}
	cp.push()
	cp.log.Info("root rotated; previous root trusted until dropped", "validUntil", cp.ca.PreviousRootsValidUntil())
	return cp.CAStatus(), nil
}

// DropPreviousRoots implements api.CABackend.
func (cp *ControlPlane) DropPreviousRoots(force bool) (api.CAStatus, error) {
	cp.rotating.Lock()
	defer cp.rotating.Unlock()
	if until := cp.ca.PreviousRootsValidUntil(); !force && time.Now().Before(until) {
		return cp.CAStatus(), fmt.Errorf("%w until %s (%s from now): wait, or force it and break them",
			api.ErrRootsInUse, until.Format(time.RFC3339), time.Until(until).Round(time.Second))
	}
	if err := cp.ca.DropPreviousRoots(); err != nil {
		return cp.CAStatus(), err
	}
	cp.push()
	return cp.CAStatus(), nil
}
