package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/loadgen"
)

func newCallCmd() *cobra.Command {
	var (
		n, c     int
		headers  []string
		method   string
		output   string
		interval time.Duration
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call URL",
		Short: "Send N HTTP requests and count answers by status and backend (use with skein exec)",
		Example: `  skein exec client -- skein call http://catalog:8080/ -n 1000
  skein exec client -- skein call http://catalog:8080/ -n 100 -H 'x-canary: true'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h := http.Header{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok {
					return fmt.Errorf("-H %q: want 'Name: value'", kv)
				}
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			s := loadgen.Run(cmd.Context(), loadgen.Options{
				URL: args[0], Method: method, Headers: h, Requests: n, Concurrency: c,
				Interval: interval, Timeout: timeout,
			})
			if output == "json" {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(s); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), s)
			}
			if s.Failed() > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d requests failed", s.Failed(), s.Requests)}
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "requests", "n", 1, "number of requests")
	cmd.Flags().IntVarP(&c, "concurrency", "c", 4, "concurrent workers")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	cmd.Flags().StringVarP(&method, "method", "X", "GET", "HTTP method")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().DurationVar(&interval, "interval", 0, "pause between requests of one worker")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout")
	return cmd
}
