package echo

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Header names a client uses to ask one request for a status or a latency.
const (
	HeaderStatus  = "x-echo-status"
	HeaderLatency = "x-echo-latency"
)

// behaviour is what one answer does: how long to wait and which status to send.
type behaviour struct {
	latency time.Duration
	status  int // 0: decided by the handler
}

// BadOverrideError is a status or latency override that cannot be honoured.
type BadOverrideError struct {
	Field, Value string
	Err          error
}

func (e *BadOverrideError) Error() string {
	return fmt.Sprintf("bad %s %q: %v", e.Field, e.Value, e.Err)
}
func (e *BadOverrideError) Unwrap() error { return e.Err }

// resolveBehaviour applies, in increasing precedence, the server defaults, the
// x-echo-* headers and the ?status= / ?latency= query parameters.
func resolveBehaviour(def behaviour, h http.Header, q url.Values) (behaviour, error) {
	b := def
	for _, src := range []struct{ status, latency string }{
		{h.Get(HeaderStatus), h.Get(HeaderLatency)},
		{q.Get("status"), q.Get("latency")},
	} {
		if src.status != "" {
			s, err := parseStatus(src.status)
			if err != nil {
				return b, err
			}
			b.status = s
		}
		if src.latency != "" {
			d, err := time.ParseDuration(src.latency)
			if err == nil && d < 0 {
				err = fmt.Errorf("negative")
			}
			if err != nil {
				return b, &BadOverrideError{Field: "latency", Value: src.latency, Err: err}
			}
			b.latency = d
		}
	}
	return b, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err == nil && (n < 100 || n > 599) {
		err = fmt.Errorf("not in 100..599")
	}
	if err != nil {
		return 0, &BadOverrideError{Field: "status", Value: s, Err: err}
	}
	return n, nil
}
