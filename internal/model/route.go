package model

import "time"

// This file holds the HTTP route actions shared by every source of routes (Istio
// VirtualService, Gateway API HTTPRoute, Istio Gateway): what a matched request does
// besides being forwarded. Each field carries Envoy route semantics, which the
// translator emits and the skein proxy implements (docs/XDS.md).

// HeaderOps edits one side (request or response) of a message: Set replaces a
// header's values, Add appends a value, Remove deletes a header. Names are lower case.
type HeaderOps struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Empty reports whether the operations change nothing.
func (h *HeaderOps) Empty() bool {
	return h == nil || len(h.Set) == 0 && len(h.Add) == 0 && len(h.Remove) == 0
}

// Headers edits a request before it is forwarded and the response before it is
// returned (Istio's Headers, Gateway API's header modifier filters).
type Headers struct {
	Request  HeaderOps `json:"request,omitzero"`
	Response HeaderOps `json:"response,omitzero"`
}

// Empty reports whether the headers change nothing.
func (h *Headers) Empty() bool { return h == nil || h.Request.Empty() && h.Response.Empty() }

// HTTPRedirect answers with a redirect instead of forwarding. Empty fields keep the
// request's value; URI replaces the path (the query string is kept unless URI has
// one).
type HTTPRedirect struct {
	URI       string `json:"uri,omitempty"`
	Authority string `json:"authority,omitempty"`
	Port      int    `json:"port,omitempty"`
	Scheme    string `json:"scheme,omitempty"`
	// Code is 301 (default), 302, 303, 307 or 308.
	Code int `json:"code,omitempty"`
	// PrefixRewrite, instead of URI, replaces the route's matched path prefix (the
	// Gateway API's ReplacePrefixMatch).
	PrefixRewrite string `json:"prefixRewrite,omitempty"`
}

// HTTPRewrite changes the request before it is forwarded. URI replaces the matched
// prefix (the whole path for exact and regex matches); URIRegex rewrites every match of
// a regular expression in the path. At most one of them is set.
type HTTPRewrite struct {
	URI       string        `json:"uri,omitempty"`
	URIRegex  *RegexRewrite `json:"uriRegex,omitempty"`
	Authority string        `json:"authority,omitempty"`
}

// RegexRewrite replaces every match of Match (RE2) with Rewrite, in which \1..\9 name
// capture groups (Envoy's and Istio's syntax).
type RegexRewrite struct {
	Match   string `json:"match"`
	Rewrite string `json:"rewrite"`
}

// RetryPolicy says when and how often a failed request is tried again. A route whose
// Retries is nil gets DefaultRetryPolicy (Istio's default); Attempts 0 disables retries.
type RetryPolicy struct {
	Attempts      int           `json:"attempts"`
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn lists Envoy retry conditions (5xx, gateway-error, reset, connect-failure,
	// refused-stream, retriable-4xx, retriable-status-codes, and the gRPC ones
	// cancelled, deadline-exceeded, internal, resource-exhausted, unavailable).
	RetryOn []string `json:"retryOn,omitempty"`
	// RetriableStatusCodes are retried when RetryOn has retriable-status-codes.
	RetriableStatusCodes []int `json:"retriableStatusCodes,omitempty"`
	// Budget, when set, caps retries as Linkerd does (a skein extension).
	Budget *RetryBudget `json:"budget,omitempty"`
	// BackOff is the base interval between retries (0: Envoy's 25 ms).
	BackOff time.Duration `json:"backOff,omitempty"`
	// IgnorePreviousHosts false lets a retry go to an endpoint already tried (nil or
	// true: retries prefer other endpoints, Istio's default).
	IgnorePreviousHosts *bool `json:"ignorePreviousHosts,omitempty"`
}

// DefaultRetryPolicy is Istio's retry policy for routes that set none: two retries on
// connect failures, refused streams, gRPC unavailable/cancelled and HTTP 503.
func DefaultRetryPolicy() *RetryPolicy {
	return &RetryPolicy{
		Attempts:             2,
		RetryOn:              []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"},
		RetriableStatusCodes: []int{503},
	}
}

// RetryBudget limits retries to a share of requests, as Linkerd's retry budgets do:
// over the last TTL, retries may be at most Ratio times the original requests, plus
// MinPerSecond retries per second that are always allowed.
type RetryBudget struct {
	Ratio        float64       `json:"ratio"`
	MinPerSecond int           `json:"minPerSecond"`
	TTL          time.Duration `json:"ttl"`
}

// HTTPFault injects failures: a delay before forwarding, or an abort answered by the
// proxy itself, each for a percentage of requests.
type HTTPFault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay holds Fixed for Percent (0..100) of requests.
type FaultDelay struct {
	Fixed   time.Duration `json:"fixed"`
	Percent float64       `json:"percent"`
}

// FaultAbort answers Percent (0..100) of requests with HTTPStatus, or with the gRPC
// status GRPCStatus (its canonical name, e.g. UNAVAILABLE). Exactly one is set.
type FaultAbort struct {
	HTTPStatus int     `json:"httpStatus,omitempty"`
	GRPCStatus string  `json:"grpcStatus,omitempty"`
	Percent    float64 `json:"percent"`
}

// Mirror sends a copy of Percent (0..100) of requests to Destination and ignores the
// answer; the copy's Host gets a "-shadow" suffix, as Envoy does.
type Mirror struct {
	Destination RouteDestination `json:"destination"`
	Percent     float64          `json:"percent"`
}

// CORSPolicy lets the proxy answer CORS preflight requests and add CORS headers to
// answers for allowed origins.
type CORSPolicy struct {
	AllowOrigins     []StringMatch `json:"allowOrigins,omitempty"`
	AllowMethods     []string      `json:"allowMethods,omitempty"`
	AllowHeaders     []string      `json:"allowHeaders,omitempty"`
	ExposeHeaders    []string      `json:"exposeHeaders,omitempty"`
	MaxAge           time.Duration `json:"maxAge,omitempty"`
	AllowCredentials *bool         `json:"allowCredentials,omitempty"`
}
