package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for Options.
const (
	DefaultTrustDomain = "cluster.local"
	DefaultWorkloadTTL = 24 * time.Hour
	rootLifetime       = 10 * 365 * 24 * time.Hour
	maxBackdate        = time.Minute
)

// Options configure a CA. The zero value is usable.
type Options struct {
	// TrustDomain of issued SPIFFE IDs; DefaultTrustDomain when empty.
	TrustDomain string
	// WorkloadTTL is the default and the maximum lifetime of a workload SVID;
	// DefaultWorkloadTTL when zero. Seconds are fine (tests exercise rotation).
	WorkloadTTL time.Duration
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
	// Logger receives audit lines (issued, rejected, rotated); discarded when nil.
	Logger *slog.Logger
	// OnIssued, optional, learns every SVID issued and the proxy ID of its request.
	// It runs on the signing goroutine and must be quick.
	OnIssued func(proxyID string, svid *SVID)
}

func (o Options) withDefaults() (Options, spiffeid.TrustDomain, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
	if err != nil {
		return o, td, fmt.Errorf("%w: trust domain %q: %w", ErrInvalidOptions, o.TrustDomain, err)
	}
	if o.WorkloadTTL < 0 {
		return o, td, fmt.Errorf("%w: negative WorkloadTTL %s", ErrInvalidOptions, o.WorkloadTTL)
	}
	if o.WorkloadTTL == 0 {
		o.WorkloadTTL = DefaultWorkloadTTL
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, td, nil
}

// Identity is a workload identity as Istio names it: namespace and service account.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

func (i Identity) String() string { return "ns/" + i.Namespace + "/sa/" + i.ServiceAccount }

// authority is what signs right now. It is immutable and swapped atomically on root
// rotation, so Sign never holds a lock while doing crypto.
type authority struct {
	cert          *x509.Certificate   // signs workload certificates
	key           crypto.Signer       // private key of cert
	intermediates []*x509.Certificate // chain from cert (exclusive) up to a root (exclusive)
	bundle        []*x509.Certificate // trusted roots, current first
	previousRoots []*x509.Certificate // roots kept in the bundle after a rotation (root mode only)
	// next is a prepared root (PrepareRootRotation): trusted, not yet signing.
	next    *x509.Certificate
	nextKey crypto.Signer
	// issued tracks the latest NotAfter of SVIDs this authority signed; prevIssued
	// does the same for the roots in previousRoots.
	issued     *issuedUntil
	prevIssued []*issuedUntil
}

// CA issues workload SVIDs. It is safe for concurrent use.
type CA struct {
	opts   Options
	td     spiffeid.TrustDomain
	dir    string
	plugin bool // an external intermediate from Istio's plug-in layout

	current atomic.Pointer[authority]
	rotate  sync.Mutex // serialises RotateRoot / DropPreviousRoots and their file writes

	creds credentialStore
}

// TrustDomain returns the trust domain of issued SVIDs.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// WorkloadTTL returns the default and maximum SVID lifetime.
func (c *CA) WorkloadTTL() time.Duration { return c.opts.WorkloadTTL }

// Plugin reports whether the CA signs with an external intermediate (plug-in layout).
func (c *CA) Plugin() bool { return c.plugin }

// Bundle returns the trusted roots: the current root first, then roots kept from
// before a rotation. The slice is a copy; the certificates must not be modified.
func (c *CA) Bundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), c.current.Load().bundle...)
}

// BundlePEM returns Bundle as concatenated PEM blocks.
func (c *CA) BundlePEM() []byte { return encodeCerts(c.current.Load().bundle) }

// SigningCert returns the certificate that signs workload SVIDs (root or intermediate).
func (c *CA) SigningCert() *x509.Certificate { return c.current.Load().cert }

// SPIFFEID returns the workload SPIFFE ID of an identity in this trust domain.
func (c *CA) SPIFFEID(id Identity) (spiffeid.ID, error) {
	return spiffeid.FromSegments(c.td, "ns", id.Namespace, "sa", id.ServiceAccount)
}
