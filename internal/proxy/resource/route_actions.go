package resource

import (
	"regexp"
	"time"
)

// The route actions beyond choosing a cluster (unmarshal_rds_actions.go decodes them):
// Envoy's semantics, documented in docs/XDS.md.

// HeaderMutation edits a request or response: Remove first, then each of Add in order
// (Envoy's order).
type HeaderMutation struct {
	Add    []HeaderValue
	Remove []string // canonical keys
}

// Empty reports whether the mutation changes nothing.
func (m HeaderMutation) Empty() bool { return len(m.Add) == 0 && len(m.Remove) == 0 }

// HeaderValue is one HeaderValueOption: a header (canonical key), a value and Envoy's
// append_action.
type HeaderValue struct {
	Key, Value string
	Action     AppendAction
}

// AppendAction is HeaderValueOption.append_action.
type AppendAction int

const (
	AppendIfExistsOrAdd AppendAction = iota // Envoy's default
	AddIfAbsent
	OverwriteIfExistsOrAdd
	OverwriteIfExists
)

// Redirect is a RedirectAction: the proxy answers Code with a Location built from
// the request and these replacements (empty: keep the request's).
type Redirect struct {
	Scheme string
	Host   string
	Port   int
	Path   string
	Code   int
	// Prefix (prefix_rewrite, HasPrefix) replaces the route's matched prefix in the
	// path, MatchPrefix, or the whole path when the route's match is not a prefix.
	Prefix      string
	HasPrefix   bool
	MatchPrefix string
}

// Rewrite changes the forwarded request: Prefix replaces the matched prefix (the whole
// path for exact and regex matches), or Regex/Substitution rewrite the path; Host
// replaces the authority.
type Rewrite struct {
	Prefix       string
	HasPrefix    bool
	Regex        *regexp.Regexp
	Substitution string // Go regexp.Expand syntax
	Host         string
}

// RetryOn is a set of Envoy retry conditions.
type RetryOn uint32

const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCInternal
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
)

// retryOnNames are the x-envoy-retry-on / x-envoy-retry-grpc-on condition names.
var retryOnNames = map[string]RetryOn{
	"5xx":                    Retry5xx,
	"gateway-error":          RetryGatewayError,
	"reset":                  RetryReset,
	"connect-failure":        RetryConnectFailure,
	"retriable-4xx":          RetryRetriable4xx,
	"refused-stream":         RetryRefusedStream,
	"retriable-status-codes": RetryRetriableStatusCodes,
	"cancelled":              RetryGRPCCancelled,
	"deadline-exceeded":      RetryGRPCDeadlineExceeded,
	"internal":               RetryGRPCInternal,
	"resource-exhausted":     RetryGRPCResourceExhausted,
	"unavailable":            RetryGRPCUnavailable,
}

// RetryPolicy is a route's retry_policy.
type RetryPolicy struct {
	On          RetryOn
	NumRetries  int
	StatusCodes []int
	// PerTryTimeout bounds each attempt; 0: only the route timeout applies.
	PerTryTimeout time.Duration
	// PreviousHosts: retries avoid endpoints already tried (previous_hosts predicate),
	// up to HostSelectionAttempts picks.
	PreviousHosts         bool
	HostSelectionAttempts int
	// BackOff: Envoy's exponential back-off with full jitter between retries.
	BaseInterval, MaxInterval time.Duration
	// Budget is skein's retry budget; nil: none.
	Budget *RetryBudget
}

// RetryBudget limits retries, as Linkerd does: within the last TTL, retries may be at
// most Ratio × requests + MinPerSecond × TTL seconds.
type RetryBudget struct {
	Ratio        float64
	MinPerSecond float64
	TTL          time.Duration
}

// Mirror is a request_mirror_policies entry: copy Numerator/Denominator of requests
// to Cluster.
type Mirror struct {
	Cluster                string
	Numerator, Denominator uint32
}

// Fault is an envoy.filters.http.fault per-route configuration.
type Fault struct {
	Delay                      time.Duration
	DelayNumerator, DelayDenom uint32
	HasDelay, HasAbort         bool
	AbortHTTP                  int // 0 when AbortGRPC is set
	AbortGRPC                  int // -1 when AbortHTTP is set
	AbortNumerator, AbortDenom uint32
}

// CORS is an envoy.filters.http.cors per-route CorsPolicy.
type CORS struct {
	AllowOrigins     []StringMatcher
	AllowMethods     string
	AllowHeaders     string
	ExposeHeaders    string
	MaxAge           string
	AllowCredentials bool
}

// QueryMatcher matches one query parameter: presence, or a string match of its first
// value.
type QueryMatcher struct {
	Name    string
	Present bool
	Match   StringMatcher
}
