package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/observe"
	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/streaminfo"
	"skein.dev/skein/internal/runtime/local/statedir"
)

// observeClient reads sidecars; taps stream, so no overall timeout.
var observeClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

func targetsOf(ctx context.Context, stateDir, workload string) ([]observe.Target, api.Status, error) {
	st, err := fetchStatus(ctx, stateDir, "")
	if err != nil {
		return nil, st, &exitError{code: 2, err: err}
	}
	all := observe.Targets(st)
	if workload == "" {
		return all, st, nil
	}
	name, ns, _ := strings.Cut(workload, ".")
	if ns == "" {
		ns = "default"
	}
	var out []observe.Target
	for _, t := range all {
		if t.Workload == name && t.Namespace == ns {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, st, &exitError{code: 2, err: fmt.Errorf("no running replica of workload %s.%s", name, ns)}
	}
	return out, st, nil
}

func newStatCmd() *cobra.Command {
	var stateDir, output string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "stat [workloads|services|edges]",
		Short: "Golden signals per workload or service: RPS, success rate, latency percentiles, mTLS share",
		Long: `stat scrapes every sidecar's Prometheus endpoint twice, --window apart, and shows
the difference, as 'linkerd viz stat' does: requests per second, the share of answers
that are not 5xx, p50/p95/p99 latency (from the istio_request_duration_milliseconds
histograms) and the share of requests that arrived over mutual TLS. Workloads and
services are counted where the request arrived (reporter=destination); requests that
never reached a destination (no route, no healthy upstream) count for the service.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"workloads", "services", "edges"},
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "workloads"
			if len(args) == 1 {
				what = args[0]
			}
			switch what {
			case "workloads", "workload", "wl", "deploy", "services", "service", "svc", "edges", "edge":
			default:
				return fmt.Errorf("stat %q: want workloads, services or edges", what)
			}
			targets, _, err := targetsOf(cmd.Context(), stateDir, "")
			if err != nil {
				return err
			}
			res, err := observe.Stat(cmd.Context(), observeClient, targets, window)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printStat(cmd.OutOrStdout(), what, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().DurationVarP(&window, "window", "w", 5*time.Second, "time between the two scrapes")
	return cmd
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", v*100) }

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", v)
}

func printStat(w io.Writer, what string, res observe.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name string, s observe.Stats) {
		if s.Requests == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\n", name)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\n", name, pct(s.SuccessRate), s.RPS, ms(s.P50), ms(s.P95), ms(s.P99), pct(s.MTLS))
	}
	switch what {
	case "services", "service", "svc":
		fmt.Fprintln(tw, "SERVICE\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tMTLS")
		for _, r := range res.Services {
			row(r.Name, r.Stats)
		}
	case "edges", "edge":
		fmt.Fprintln(tw, "FROM\tTO\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tMTLS")
		for _, e := range res.Edges {
			row(e.Source+"\t"+e.Destination, e.Stats)
		}
	default:
		fmt.Fprintln(tw, "WORKLOAD\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tMTLS")
		for _, r := range res.Workloads {
			row(r.Name+"."+r.Namespace, r.Stats)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "(over %.1fs)\n", res.Window)
	for _, e := range res.Errors {
		fmt.Fprintf(w, "warning: %s\n", e)
	}
}

func newTapCmd() *cobra.Command {
	var stateDir, output string
	var f observe.TapFilter
	var limit int
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "tap WORKLOAD[.NAMESPACE]",
		Short: "Stream the requests a workload's sidecars handle, live",
		Long: `tap opens the /tap stream of every replica's sidecar of WORKLOAD and prints each
request or connection as it finishes (both directions: the calls it gets and the calls
it makes), until Ctrl-C, --max-requests or --duration.`,
		Example: `  skein tap catalog-v1
  skein tap frontend --path /api --method GET --status 5xx -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, _, err := targetsOf(cmd.Context(), stateDir, args[0])
			if err != nil {
				return err
			}
			ctx, cancel := observeContext(cmd.Context(), duration)
			defer cancel()
			events := make(chan streaminfo.Record, 64)
			errc := make(chan error, 1)
			go func() { errc <- observe.Tap(ctx, observeClient, targets, f, events); close(events) }()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			n := 0
			for rec := range events {
				if output == "json" {
					_ = enc.Encode(rec)
				} else {
					fmt.Fprintln(out, tapLine(rec))
				}
				if n++; limit > 0 && n >= limit {
					cancel()
					break
				}
			}
			if err := <-errc; err != nil && n == 0 {
				return err
			}
			return nil
		},
	}
	addTapFlags(cmd, &stateDir, &f, &duration)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (one streaminfo record per line)")
	cmd.Flags().IntVar(&limit, "max-requests", 0, "stop after this many requests (0: no limit)")
	return cmd
}

func addTapFlags(cmd *cobra.Command, stateDir *string, f *observe.TapFilter, duration *time.Duration) {
	cmd.Flags().StringVar(stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVar(&f.Path, "path", "", "only requests whose path starts with this")
	cmd.Flags().StringVar(&f.Method, "method", "", "only requests with this method")
	cmd.Flags().StringVar(&f.Status, "status", "", "only answers with this code (503) or class (5xx)")
	cmd.Flags().StringVar(&f.Authority, "authority", "", "only requests whose authority starts with this")
	cmd.Flags().StringVar(&f.Direction, "direction", "", "inbound or outbound (default both)")
	cmd.Flags().DurationVar(duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
}

func observeContext(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt)
	if d <= 0 {
		return ctx, stop
	}
	ctx2, cancel := context.WithTimeout(ctx, d)
	return ctx2, func() { cancel(); stop() }
}

// tapLine prints a request as linkerd tap does: direction, peers, the request, the
// answer and its latency.
func tapLine(r streaminfo.Record) string {
	src, dst := orUnknown(r.SourceWorkload), orUnknown(r.DestinationWorkload)
	dir := "in "
	if r.Direction == "outbound" {
		dir = "out"
	}
	if r.Protocol == "TCP" {
		return fmt.Sprintf("%s %s src=%s dst=%s tcp cluster=%s flags=%s sent=%dB received=%dB duration=%.1fms",
			r.Proxy, dir, src, dst, r.UpstreamCluster, r.ResponseFlags, r.BytesSent, r.BytesReceived, r.Duration)
	}
	return fmt.Sprintf("%s %s src=%s dst=%s :method=%s :authority=%s :path=%s :status=%d flags=%s latency=%.1fms tls=%s id=%s",
		r.Proxy, dir, src, dst, r.Method, r.Authority, r.Path, r.ResponseCode, r.ResponseFlags, r.Duration, r.ConnectionSecurityPolicy, r.XRequestID)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func newTopCmd() *cobra.Command {
	var stateDir, output string
	var f observe.TapFilter
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "top [WORKLOAD[.NAMESPACE]]",
		Short: "The hottest paths: requests per source, destination and path, from live taps",
		Long: `top taps every sidecar (or one workload's) for --duration and ranks what it saw by
request count, as 'linkerd viz top': source and destination workload, method and path,
count, success and best/worst latency. Requests are counted where they arrived, so
none counts twice.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wl := ""
			if len(args) == 1 {
				wl = args[0]
			}
			targets, _, err := targetsOf(cmd.Context(), stateDir, wl)
			if err != nil {
				return err
			}
			ctx, cancel := observeContext(cmd.Context(), duration)
			defer cancel()
			f.Direction = "inbound"
			events := make(chan streaminfo.Record, 256)
			errc := make(chan error, 1)
			go func() { errc <- observe.Tap(ctx, observeClient, targets, f, events); close(events) }()
			top := observe.NewTop()
			for rec := range events {
				top.Add(rec)
			}
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", err)
			}
			rows := top.Rows()
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SOURCE\tDESTINATION\tMETHOD\tPATH\tCOUNT\tSUCCESS\tBEST\tWORST\tLAST")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Source, r.Destination, r.Method, r.Path, r.Count,
					pct(float64(r.Success)/float64(r.Count)), ms(r.Best), ms(r.Worst), ms(r.Last))
			}
			return tw.Flush()
		},
	}
	addTapFlags(cmd, &stateDir, &f, &duration)
	cmd.Flags().Lookup("duration").DefValue = "5s"
	_ = cmd.Flags().Set("duration", "5s")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newExplainCmd() *cobra.Command {
	var stateDir, output, method, listener string
	var headers []string
	cmd := &cobra.Command{
		Use:   "explain WORKLOAD[.NAMESPACE] URL",
		Short: "Why a request from WORKLOAD gets the answer it gets: listener, route, policy, cluster, endpoints",
		Long: `explain asks WORKLOAD's sidecar (replica 0) how it would handle a request to URL,
using the sidecar's own compiled tables (POST /explain on its admin port): the listener,
the virtual host and why, every route tried in order and why it did not match, the
authorization decision, the destination clusters with their subsets, endpoints and
health, load balancer, timeout/retry/fault policy, TLS mode, and the outcome
(forwarded, or the status and Envoy response flag the proxy answers itself).
When the request is forwarded to a workload of the mesh, the destination sidecar
(the one owning the first healthy endpoint) then explains it as a connection from
WORKLOAD (over mTLS with WORKLOAD's SPIFFE ID when the caller originates mTLS): its
inbound filter chain, the authorization decision of its RBAC filters with the
AuthorizationPolicy and rule that decided (ns[NS]-policy[NAME]-rule[N]) and its route.`,
		Example: `  skein explain frontend http://catalog:8080/items -H 'x-canary: true'
  skein explain frontend http://nosuch:8080/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, st, err := targetsOf(cmd.Context(), stateDir, args[0])
			if err != nil {
				return err
			}
			req := admin.ExplainRequest{Listener: listener, Method: method, URL: args[1], Headers: map[string][]string{}}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok {
					return fmt.Errorf("-H %q: want 'Name: value'", kv)
				}
				req.Headers[strings.TrimSpace(k)] = append(req.Headers[strings.TrimSpace(k)], strings.TrimSpace(v))
			}
			t := targets[0]
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var path *observe.Path
			if listener != "" {
				ex, err := observe.Explain(ctx, observeClient, t.Admin, req)
				if err != nil {
					return err
				}
				path = &observe.Path{Source: ex}
			} else if path, err = observe.ExplainPath(ctx, observeClient, t, observe.Targets(st), req); err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(path)
			}
			observe.RenderPath(cmd.OutOrStdout(), fmt.Sprintf("%s.%s (%s)", t.Workload, t.Namespace, t.Proxy), req, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVarP(&method, "method", "X", "GET", "request method")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	cmd.Flags().StringVar(&listener, "listener", "", "explain on this listener (default: the app's outbound HTTP listener)")
	return cmd
}
