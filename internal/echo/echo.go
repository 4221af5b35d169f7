// Package echo is skein's demo and test workload (like Istio's httpbin and fortio): an
// HTTP/1.1, h2c and gRPC echo server on one port, a raw TCP echo, and a small load
// generator. Every answer says which workload replica produced it and what it saw, so
// tests and demos can tell where a request was routed and which headers reached it.
package echo

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Identity names the workload replica that answers; `skein up` passes it through the
// SKEIN_WORKLOAD, SKEIN_NAMESPACE and SKEIN_REPLICA environment variables.
type Identity struct {
	Workload  string
	Namespace string
	Replica   int
}

// IdentityFromEnv reads the identity with getenv (os.Getenv in the binary, a map in tests).
func IdentityFromEnv(getenv func(string) string) (Identity, error) {
	id := Identity{Workload: getenv("SKEIN_WORKLOAD"), Namespace: getenv("SKEIN_NAMESPACE")}
	if r := getenv("SKEIN_REPLICA"); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil {
			return Identity{}, fmt.Errorf("SKEIN_REPLICA=%q: %w", r, err)
		}
		id.Replica = n
	}
	return id, nil
}

// Options configures the HTTP/gRPC echo server.
type Options struct {
	Identity Identity
	// Latency is added before every answer; a request may override it.
	Latency time.Duration
	// Status, when non-zero, is the status of every answer; a request may override it.
	Status int
	// Calls are URLs called (GET) for every incoming request; their answers are
	// included in "upstreams".
	Calls []string
	// Propagate names headers copied from the incoming request to upstream calls, in
	// addition to the tracing headers that are always copied.
	Propagate []string
	// Env is echoed back under "env" (the binary fills it from --echo-env).
	Env map[string]string
	// CallClient makes the upstream calls; nil means a client that honours HTTP_PROXY,
	// which is how an application reaches the mesh through its sidecar.
	CallClient *http.Client
	// CallTimeout bounds each upstream call; zero means 5 s.
	CallTimeout time.Duration
	// ShutdownGrace is how long in-flight requests may run after the context is
	// cancelled; zero means 5 s.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.CallClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = http.ProxyFromEnvironment
		o.CallClient = &http.Client{Transport: tr}
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Response is the JSON body of every echo answer (HTTP), and the field set of every
// gRPC answer (as a google.protobuf.Struct).
type Response struct {
	Workload   string            `json:"workload"`
	Namespace  string            `json:"namespace"`
	Replica    int               `json:"replica"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Host       string            `json:"host"`
	Proto      string            `json:"proto"`
	RemoteAddr string            `json:"remoteAddr,omitempty"`
	LocalAddr  string            `json:"localAddr,omitempty"`
	Headers    map[string]string `json:"headers"`
	Env        map[string]string `json:"env,omitempty"`
	Upstreams  []Upstream        `json:"upstreams,omitempty"`
	// Attempt counts the requests with this request's x-request-id this replica has
	// answered, this one included (retries and mirror copies share the id).
	Attempt int `json:"attempt,omitempty"`
	// Request is the gRPC request message, echoed back (gRPC only).
	Request map[string]any `json:"request,omitempty"`
	// Index is the position of a message in a Stream answer (gRPC only).
	Index int `json:"index,omitempty"`
}

// Upstream is the result of one --call.
type Upstream struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	// Body is the upstream's JSON body; BodyText holds a body that is not JSON.
	Body     map[string]any `json:"body,omitempty"`
	BodyText string         `json:"bodyText,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// Failed reports whether the call failed at the transport or got a 5xx.
func (u Upstream) Failed() bool { return u.Error != "" || u.Status >= 500 }

// Response decodes the upstream's body as another echo's answer.
func (u Upstream) Response() (Response, error) {
	var r Response
	if u.Body == nil {
		return r, fmt.Errorf("upstream %s: no JSON body", u.URL)
	}
	b, err := json.Marshal(u.Body)
	if err != nil {
		return r, fmt.Errorf("upstream %s: %w", u.URL, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("upstream %s: %w", u.URL, err)
	}
	return r, nil
}
