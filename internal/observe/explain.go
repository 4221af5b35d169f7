package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"skein.dev/skein/internal/proxy/admin"
	"skein.dev/skein/internal/proxy/forward"
)

// Explain asks a sidecar's admin server (POST /explain) how it handles a request.
func Explain(ctx context.Context, client *http.Client, adminAddr string, req admin.ExplainRequest) (*forward.Explanation, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+adminAddr+"/explain", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sidecar %s: %s", adminAddr, strings.TrimSpace(string(data)))
	}
	var ex forward.Explanation
	if err := json.Unmarshal(data, &ex); err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", adminAddr, err)
	}
	return &ex, nil
}

// RenderExplanation prints the decision trace for people.
func RenderExplanation(w io.Writer, source string, req admin.ExplainRequest, ex *forward.Explanation) {
	fmt.Fprintf(w, "request:       %s %s\n", strings.ToUpper(orDefault(req.Method, "GET")), req.URL)
	keys := make([]string, 0, len(req.Headers))
	for k := range req.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  header       %s: %s\n", k, strings.Join(req.Headers[k], ", "))
	}
	fmt.Fprintf(w, "source:        %s\n", source)
	fmt.Fprintf(w, "listener:      %s (%s) — %s\n", ex.Listener, ex.Direction, ex.ListenerReason)
	if r := ex.Routing; r != nil {
		fmt.Fprintf(w, "route config:  %s\n", r.RouteConfig)
		if r.VirtualHost != "" {
			fmt.Fprintf(w, "virtual host:  %s — %s\n", r.VirtualHost, r.VirtualHostReason)
		} else {
			fmt.Fprintf(w, "virtual host:  none — %s\n", r.VirtualHostReason)
		}
		if len(r.Routes) > 0 {
			fmt.Fprintln(w, "routes (in order):")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, rc := range r.Routes {
				verdict := "no match: " + rc.Reason
				mark := "-"
				if rc.Matched {
					verdict, mark = "MATCHED", "*"
				}
				fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", mark, rc.Name, rc.Match, verdict)
			}
			tw.Flush()
		}
	}
	if ex.Route == "" {
		fmt.Fprintf(w, "route:         none\n")
	} else {
		fmt.Fprintf(w, "route:         %s\n", ex.Route)
	}
	fmt.Fprintf(w, "authorization: %s\n", ex.Authorization)
	fmt.Fprintf(w, "timeout:       %s\n", ex.Timeout)
	fmt.Fprintf(w, "retry:         %s\n", ex.Retry)
	fmt.Fprintf(w, "fault:         %s\n", ex.Fault)
	if ex.DestinationService != "" {
		fmt.Fprintf(w, "destination:   %s\n", ex.DestinationService)
	}
	for _, c := range ex.Clusters {
		subset := c.Subset
		if subset == "" {
			subset = "-"
		}
		fmt.Fprintf(w, "cluster:       %s  weight %d (%.0f%%)  subset %s\n", c.Name, c.Weight, c.Percent, subset)
		if !c.Found {
			fmt.Fprintf(w, "  not found on this proxy\n")
		} else {
			fmt.Fprintf(w, "  lb %s, connect timeout %s, %s, tls: %s\n", c.LoadBalancer, c.ConnectTimeout, c.Protocol, c.TLS)
			if len(c.Endpoints) == 0 {
				fmt.Fprintf(w, "  endpoints: none\n")
			}
			for _, e := range c.Endpoints {
				health := "healthy"
				if !e.Healthy {
					health = "UNHEALTHY (not eligible)"
				}
				tls := "plaintext"
				if e.TLS {
					tls = "mTLS"
				}
				fmt.Fprintf(w, "  endpoint %s weight %d %s %s\n", e.Address, e.Weight, tls, health)
			}
		}
		fmt.Fprintf(w, "  => %s\n", outcomeText(c.Outcome))
	}
	fmt.Fprintf(w, "outcome:       %s\n", outcomeText(ex.Outcome))
}

func outcomeText(o forward.Outcome) string {
	if o.Forwarded {
		return o.Reason
	}
	return fmt.Sprintf("%d %s: %s", o.ResponseCode, o.ResponseFlags, o.Reason)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
