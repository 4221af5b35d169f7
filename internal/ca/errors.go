package ca

import (
	"errors"
	"fmt"
)

// Stage names the check of Sign that rejected a request. Checks run in this order
// and the first failure is reported, so a caller learns about a malformed request
// before anything about its credential is revealed.
type Stage int

// The stages of Sign, in the order they run.
const (
	StageRequest    Stage = iota + 1 // request shape: CSR present, TTL sane, identity complete
	StageCSR                         // CSR parses, is self-signed, carries exactly the expected URI SAN
	StageCredential                  // bootstrap credential is known, not revoked, and bound to this proxy
	StageIdentity                    // the credential was issued for exactly the requested identity
)

func (s Stage) String() string {
	switch s {
	case StageRequest:
		return "request"
	case StageCSR:
		return "csr"
	case StageCredential:
		return "credential"
	case StageIdentity:
		return "identity"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Sentinels for each stage; every error returned by Sign matches exactly one of them
// with errors.Is. The gRPC edge maps them to status codes.
var (
	ErrInvalidRequest    = errors.New("invalid request")
	ErrInvalidCSR        = errors.New("invalid CSR")
	ErrInvalidCredential = errors.New("invalid credential")
	ErrIdentityMismatch  = errors.New("identity mismatch")
)

// Finer reasons, each belonging to one stage, so tests and logs can tell cases apart.
var (
	// StageRequest
	ErrEmptyCSR        = errors.New("CSR is empty")
	ErrCSRTooLarge     = errors.New("CSR is too large")
	ErrBadTTL          = errors.New("TTL is negative or out of range")
	ErrPartialIdentity = errors.New("identity needs both namespace and service account")
	ErrRequestField    = errors.New("unknown or mistyped request field")

	// StageCSR
	ErrCSRNotPEM       = errors.New("CSR is not a single PEM CERTIFICATE REQUEST block")
	ErrCSRParse        = errors.New("CSR does not parse")
	ErrCSRSignature    = errors.New("CSR signature does not verify")
	ErrCSRKeyType      = errors.New("CSR public key type or size not allowed")
	ErrCSRURISAN       = errors.New("CSR must carry exactly one URI SAN with the workload SPIFFE ID")
	ErrCSRExtraSAN     = errors.New("CSR carries DNS, IP or email SANs")
	ErrCSRTrustDomain  = errors.New("CSR SPIFFE ID is not in this trust domain")
	ErrCSRWorkloadPath = errors.New("CSR SPIFFE ID path is not /ns/<namespace>/sa/<service-account>")

	// StageCredential
	ErrCredentialMissing    = errors.New("no credential presented")
	ErrCredentialUnknown    = errors.New("credential unknown")
	ErrCredentialRevoked    = errors.New("credential revoked")
	ErrCredentialWrongProxy = errors.New("credential bound to another proxy")

	// StageIdentity: the struct IdentityError carries the details.
)

// Errors outside Sign.
var (
	ErrPluginLayout    = errors.New("incomplete or invalid plug-in CA layout")
	ErrRootFiles       = errors.New("invalid root CA files")
	ErrPluggedCA       = errors.New("root rotation is not possible with a plugged-in CA")
	ErrInvalidSVID     = errors.New("invalid SVID")
	ErrInvalidOptions  = errors.New("invalid CA options")
	ErrInvalidIdentity = errors.New("invalid workload identity")
)

// SignError is the error type of Sign: the stage that failed, a reason sentinel from
// the list above (or an IdentityError), and a detail for humans.
type SignError struct {
	Stage  Stage
	Reason error
	Detail string
}

func (e *SignError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("ca: %s check: %v", e.Stage, e.Reason)
	}
	return fmt.Sprintf("ca: %s check: %v: %s", e.Stage, e.Reason, e.Detail)
}

// Unwrap exposes both the stage sentinel and the reason, so errors.Is works with either.
func (e *SignError) Unwrap() []error {
	return []error{e.Stage.sentinel(), e.Reason}
}

func (s Stage) sentinel() error {
	switch s {
	case StageRequest:
		return ErrInvalidRequest
	case StageCSR:
		return ErrInvalidCSR
	case StageCredential:
		return ErrInvalidCredential
	case StageIdentity:
		return ErrIdentityMismatch
	}
	return nil
}

// IdentityError says which identity a credential was issued for and which one was asked.
type IdentityError struct {
	Credential Identity
	Requested  Identity
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("credential issued for %s, CSR asks for %s", e.Credential, e.Requested)
}

func (e *IdentityError) Is(target error) bool { return target == ErrIdentityMismatch }

func failf(stage Stage, reason error, format string, args ...any) *SignError {
	return &SignError{Stage: stage, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}
