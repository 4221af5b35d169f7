// Package ca is skein's SPIFFE certificate authority: it keeps a root (or an Istio
// plug-in intermediate), hands out one-time bootstrap credentials to sidecars, and
// issues short-lived X.509 SVIDs for spiffe://<trust-domain>/ns/<ns>/sa/<sa> from CSRs,
// over a small gRPC service. See README.md for the design and the file layout.
package ca
