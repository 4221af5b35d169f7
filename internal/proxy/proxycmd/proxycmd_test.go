package proxycmd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// TestMainRejectsBadCommandLines: flag errors come back before anything starts, with
// the flag named.
func TestMainRejectsBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		errHas  string
		errType error
	}{
		{"help", []string{"-h"}, "", flag.ErrHelp},
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag", nil},
		{"stray argument", []string{"--node-json", `{"id":"a"}`, "extra"}, "unexpected arguments", nil},
		{"both node flags", []string{"--node-json", `{"id":"a"}`, "--node-file", "/x"}, "mutually exclusive", nil},
		{"no node", nil, "--node-json or --node-file", nil},
		{"node without id", []string{"--node-json", `{}`}, "id is required", nil},
		{"unknown node field", []string{"--node-json", `{"id":"a","nope":1}`}, "nope", nil},
		{"bad log level", []string{"--log-level", "loud", "--node-json", `{"id":"a"}`}, "--log-level", nil},
		{"bad tracing", []string{"--tracing-exporter", "carrier-pigeon", "--node-json", `{"id":"a"}`}, "--tracing-*", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Main(context.Background(), "skein-proxy", tc.args, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.errType != nil && !errors.Is(err, tc.errType) {
				t.Errorf("err = %v, want %v", err, tc.errType)
			}
			if !strings.Contains(err.Error()+stderr.String(), tc.errHas) {
				t.Errorf("err = %v (stderr %q), want it to mention %q", err, stderr.String(), tc.errHas)
			}
		})
	}
}

// TestListFlag: comma-separated and repeated values add up, as pflag's StringSlice did.
func TestListFlag(t *testing.T) {
	var l listFlag
	f := flag.NewFlagSet("x", flag.ContinueOnError)
	f.Var(&l, "labels", "")
	if err := f.Parse([]string{"--labels", "a,b", "--labels=c"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(l, want) {
		t.Errorf("got %q, want %q", l, want)
	}
}

// TestTracingArgsRoundTrip: what skein up passes to its sidecars parses back to the same
// options.
func TestTracingArgsRoundTrip(t *testing.T) {
	in := TracingFlags{Exporter: "zipkin", Endpoint: "http://127.0.0.1:9411/api/v2/spans", Sampling: 12.5}
	var out TracingFlags
	f := flag.NewFlagSet("x", flag.ContinueOnError)
	out.Register(f)
	if err := f.Parse(in.Args()); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("got %+v, want %+v", out, in)
	}
	if (&TracingFlags{}).Args() != nil {
		t.Error("no tracing should render no flags")
	}
}
