// Package castatus describes a CA as the local API shows it (skein ca status), for
// every front end that owns one: skein up and skein control.
package castatus

import (
	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/ca"
)

// Of returns the CA's trust domain, roots (with their role) and workload TTL.
func Of(c *ca.CA) api.CAStatus {
	st := api.CAStatus{
		TrustDomain:             c.TrustDomain().Name(),
		Plugin:                  c.Plugin(),
		PreviousRootsValidUntil: c.PreviousRootsValidUntil(),
		WorkloadTTL:             c.WorkloadTTL().String(),
	}
	signing := c.SigningCert()
	prepared := c.PreparedRoot()
	for _, cert := range c.Bundle() {
		role := "previous"
		switch {
		case c.Plugin():
			role = "trusted" // roots of the plugged-in intermediate
		case cert.Equal(signing):
			role = "signing"
		case prepared != nil && cert.Equal(prepared):
			role = "prepared"
		}
		st.Roots = append(st.Roots, api.CARoot{Serial: cert.SerialNumber.Text(16), Subject: cert.Subject.String(), NotAfter: cert.NotAfter, Role: role})
	}
	return st
}
